"""Typed use of klepto's public API, checked by tests/test_typing.py with ``mypy --strict``.

Never run: ``reveal_type`` exists for the type checker only. Lines ending in
``# expect-error`` must be reported as errors; nothing else may be.
"""

from __future__ import annotations

import klepto
from klepto.archives import dict_archive


@klepto.lru_cache(maxsize=10)
def model(x: int, y: float = 0.5) -> str:
    return f"{x * y}"


@klepto.inf_cache(ttl=60, version="code")
async def fetch(url: str) -> bytes:
    return url.encode()


async def download() -> bytes:
    reveal_type(await fetch("u"))  # noqa: F821
    return await fetch("u")


class Grid:
    @klepto.lfu_cache()
    def cell(self, row: int, col: int) -> float:
        return row * 1.0 + col


reveal_type(model)  # noqa: F821
reveal_type(model(1))  # noqa: F821
reveal_type(model.info())  # noqa: F821
reveal_type(model.expire())  # noqa: F821
reveal_type(Grid().cell(1, 2))  # noqa: F821
model("one")  # expect-error
model(1, y="half")  # expect-error
model.key(1, 0.25)
model.clear(keepstats=True)
model.archive(dict_archive("typed", cached=False))

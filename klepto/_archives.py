"""Classic location of the backend archive classes (``klepto._archives``).

The names are the backend classes themselves (what ``cached=False`` returns), plus the
``cache`` front and the classic aliases ``archive_dict`` (= ``cache``) and ``db_archive``
(= ``sqltable_archive``). ``PREFIX`` and ``TEMP`` are the classic directory-archive name
prefixes, kept as constants for code that imports them.
"""

from __future__ import annotations

from typing import Any

from klepto import archives as _archives
from klepto.archives import cache

PREFIX = "K_"
TEMP = ".I_"
archive_dict = cache


def __getattr__(name: str) -> Any:
    """``file_archive``, ``dir_archive``, ``sqltable_archive``... as backend classes."""
    if name == "db_archive":
        name = "sqltable_archive"
    backend = getattr(_archives, f"_{name}", None)
    if backend is None or not name.endswith("_archive"):
        raise AttributeError(f"module 'klepto._archives' has no attribute {name!r}")
    return backend

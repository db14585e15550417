"""W3 at scale for file_archive: open + first lookup at 1M entries, and memory per key.

performance.md: opening a 1M-entry file_archive must not replay the file (open + first
lookup under 100 ms) and must hold at most ~200 bytes per key in memory. Both are absolute
limits, reported as ratios to a pseudo-peer holding the limit (target 1.0).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from benchmarks._harness import Result

NAME = "W3"
REPO = Path(__file__).resolve().parents[1]
VALUE = {"a": 1, "b": "x" * 56, "c": [1, 2, 3], "d": 3.5}
OPEN_LIMIT_MS = 100.0
BYTES_PER_KEY_LIMIT = 200.0


def _build(path: str, entries: int) -> None:
    from klepto.archives import file_archive

    archive = file_archive(path, cached=False)
    batch = 10_000
    for start in range(0, entries, batch):
        archive.update({f"key-{i}": VALUE for i in range(start, min(start + batch, entries))})
    archive.close()


def _probe_main(argv: list[str]) -> None:
    """In a fresh process: open + first lookup (ms), or memory held after it (bytes/key)."""
    path, entries, what = argv[0], int(argv[1]), argv[2]
    import shutil
    import tempfile
    import time
    import tracemalloc

    from klepto.archives import file_archive

    scratch = tempfile.mkdtemp()
    file_archive(os.path.join(scratch, "warm.pkl"), cached=False).close()  # imports, as W3
    shutil.rmtree(scratch)
    if what == "memory":
        tracemalloc.start()
    started = time.perf_counter()
    archive = file_archive(path, cached=False)
    archive[f"key-{entries // 2}"]
    elapsed = time.perf_counter() - started
    held = tracemalloc.get_traced_memory()[0] if what == "memory" else 0
    print(json.dumps({"open_ms": elapsed * 1e3, "bytes_per_key": held / entries}))


def _probe(path: str, entries: int, what: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    code = "import sys; from benchmarks._filescale import _probe_main; _probe_main(sys.argv[1:])"
    done = subprocess.run(
        [sys.executable, "-c", code, path, str(entries), what],
        capture_output=True,
        check=True,
        env=env,
        cwd=REPO,
    )
    return json.loads(done.stdout)


def run(base: Path, quick: bool) -> list[Result]:
    entries = 100_000 if quick else 1_000_000
    label = f"{entries // 1000}k" if entries < 1_000_000 else "1M"
    path = str(base / "scale.pkl")
    _build(path, entries)
    opened = statistics.median(_probe(path, entries, "open")["open_ms"] for _ in range(5))
    memory = _probe(path, entries, "memory")["bytes_per_key"]
    impl = "klepto.file_archive"
    open_metric = f"open+first lookup ({label})"
    memory_metric = f"memory after open ({label}), bytes/key"
    open_limit = f"limit {OPEN_LIMIT_MS:g} ms"
    memory_limit = f"limit {BYTES_PER_KEY_LIMIT:g} B/key"
    return [
        Result(NAME, open_metric, impl, opened, "ms", open_limit, 1.0),
        Result(NAME, open_metric, open_limit, OPEN_LIMIT_MS, "ms"),
        Result(NAME, memory_metric, impl, memory, "B/key", memory_limit, 1.0),
        Result(NAME, memory_metric, memory_limit, BYTES_PER_KEY_LIMIT, "B/key"),
    ]

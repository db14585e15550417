"""The floor of a store that keeps one file per key: what the file system alone costs.

W3 measures it beside the stores, interleaved with them, so that a directory archive's
figures can be read against what creating, replacing and reading a file cost *in the same
run*. That cost is not steady on every machine (``benchmarks._harness.bench_dir``: after
mass deletions, creating a file can cost 20x more for minutes), and it moves a directory
archive's ratio to diskcache (which keeps small values in SQLite) with it; the ratio to
this floor does not move.

The floor does only what any such store must: pickle the value, write it to a temporary
file in the same directory, ``os.replace`` it onto the key's name; a read opens, reads
and unpickles. No checksum, no key check, no escaping (the keys are known to be safe
names), no locking.
"""

from __future__ import annotations

import os
import pickle
from typing import Any

NAME = "file per key (floor)"


class FilePerKey:
    def __init__(self, path: str):
        os.makedirs(path, exist_ok=True)
        self._path = path
        self._temp = os.path.join(path, ".temp")

    def __setitem__(self, key: str, value: Any) -> None:
        fd = os.open(self._temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, pickle.dumps(value, pickle.HIGHEST_PROTOCOL))
        finally:
            os.close(fd)
        os.replace(self._temp, os.path.join(self._path, key))

    def __getitem__(self, key: str) -> Any:
        with open(os.path.join(self._path, key), "rb") as file:
            return pickle.load(file)

    def close(self) -> None:
        pass

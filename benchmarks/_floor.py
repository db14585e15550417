"""The floor of a store that keeps one file per key: what the file system alone costs.

W3 measures it beside the stores, interleaved with them, as the file system's weather
during the run: what creating, replacing and reading a file cost then. That cost is not
steady on every machine (``benchmarks._scratch``: after mass deletions, creating
a file can cost 5-20x more for minutes), and a directory archive's ratio to diskcache
(which keeps small values in SQLite) moves with it. It is reported without a ratio: it
lives in directories of its own, and where the file system places a directory decides how
much of that cost it meets (measured: a directory archive at 12x the floor in one run,
at 1.0x when both were in one block group), so a ratio of the two would mislead too.

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

"""Optional peers: import them if installed, say which are missing."""

from __future__ import annotations

import importlib
from types import ModuleType


def optional(module: str) -> ModuleType | None:
    try:
        return importlib.import_module(module)
    except ImportError:
        print(f"#   peer {module!r} not installed (pip install -e '.[bench]'); skipped")
        return None

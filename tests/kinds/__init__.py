"""Archive kinds for the contract suite: one module per backend, discovered automatically.

Each module defines ``KINDS``, a list of :class:`Kind`. The contract suite
(``tests/test_archive_contract.py``) runs every test against every kind listed here.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Kind:
    """How to make (and reopen) one kind of raw archive for the contract suite.

    ``make(tmp_path, request)`` returns a new, empty raw archive (``cached=False``);
    ``reopen(archive)`` returns a second object over the same storage (``None`` for
    kinds that keep nothing). ``marks`` are pytest marks (e.g. ``pytest.mark.services``).
    ``exact_keys`` is False where classic semantics make keys come back as strings.
    """

    name: str
    make: Callable[[Any, Any], Any]
    reopen: Callable[[Any], Any] | None = None
    marks: list = field(default_factory=list)
    supports_any_value: bool = True
    exact_keys: bool = True


def all_kinds() -> list[Kind]:
    kinds: list[Kind] = []
    for module in pkgutil.iter_modules(__path__):
        kinds.extend(importlib.import_module(f"{__name__}.{module.name}").KINDS)
    return kinds

"""Checks of the arguments the branching log takes: branch ids, sequence numbers, archives."""

from __future__ import annotations

import operator
from typing import Any

from klepto.archives import cache, null_archive
from klepto.archives._base import Archive
from klepto.logs._branchtypes import UnknownBranchError

__all__ = ["backend", "branch_argument", "position", "seq_argument"]


def branch_argument(branch: Any) -> int:
    if isinstance(branch, bool):
        raise TypeError("a branch id is an int, not a bool")
    branch = operator.index(branch)
    if branch < 0:
        raise UnknownBranchError(f"no branch {branch}: ids are non-negative")
    return branch  # type: ignore[no-any-return]


def seq_argument(value: Any, name: str) -> int:
    if isinstance(value, bool):
        raise TypeError(f"{name} is a sequence number (int), not a bool")
    value = operator.index(value)
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value  # type: ignore[no-any-return]


def position(at: Any, head: int, branch: int) -> int:
    """A sequence number that must exist in the branch's history (0 = before any commit)."""
    at = seq_argument(at, "at")
    if at > head:
        raise ValueError(f"at={at} is beyond the head ({head}) of branch {branch}")
    return at  # type: ignore[no-any-return]


def backend(archive: Any) -> Archive:
    """The raw archive the log writes to: a cache front's backend, because every push must
    reach storage (a front would hold it in memory until a dump)."""
    if isinstance(archive, cache):
        archive = archive.archive
    if not isinstance(archive, Archive):
        raise TypeError(f"BranchLog needs a klepto archive, got {type(archive).__name__}")
    if isinstance(archive, null_archive):
        raise ValueError("a null_archive keeps nothing; give BranchLog a real archive")
    return archive

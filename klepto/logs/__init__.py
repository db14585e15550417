"""Transactional logs kept in klepto's archives and record files.

``klepto.logs.branches``: the branching transaction log (:class:`BranchLog`).
"""

from klepto.logs.branches import (
    BranchInfo,
    BranchLog,
    Commit,
    ConflictError,
    Delete,
    Entry,
    KVView,
    Set,
    UnknownBranchError,
)

__all__ = [
    "BranchInfo",
    "BranchLog",
    "Commit",
    "ConflictError",
    "Delete",
    "Entry",
    "KVView",
    "Set",
    "UnknownBranchError",
]

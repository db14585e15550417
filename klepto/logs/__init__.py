"""Transactional logs kept in klepto's archives and record files.

``klepto.logs.branches``: the branching transaction log (:class:`BranchLog`).
``klepto.logs.checkpoint``: checkpoint + incremental log + recover (:class:`Transactional`).
``klepto.logs.oplog``: the operation store (:func:`create_file_store`, :func:`safe_load`).
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
from klepto.logs.checkpoint import (
    NoCheckpointError,
    Recovery,
    SimpleTransactional,
    Transactional,
)
from klepto.logs.oplog import (
    DataclassAsDictHandler,
    DataclassHandler,
    DetachedError,
    StoreDict,
    StoreList,
    StoreRoot,
    StoreSet,
    StrEnumHandler,
    TaggedValue,
    TypeHandler,
    UnknownTypeError,
    WeakEnumHandler,
    compact,
    create_file_store,
    export,
    open_file_store,
    open_store,
    safe_load,
)

__all__ = [
    "BranchInfo",
    "BranchLog",
    "Commit",
    "ConflictError",
    "DataclassAsDictHandler",
    "DataclassHandler",
    "Delete",
    "DetachedError",
    "Entry",
    "KVView",
    "NoCheckpointError",
    "Recovery",
    "Set",
    "SimpleTransactional",
    "StoreDict",
    "StoreList",
    "StoreRoot",
    "StoreSet",
    "StrEnumHandler",
    "TaggedValue",
    "Transactional",
    "TypeHandler",
    "UnknownBranchError",
    "UnknownTypeError",
    "WeakEnumHandler",
    "compact",
    "create_file_store",
    "export",
    "open_file_store",
    "open_store",
    "safe_load",
]

"""The operation store: nested dicts, lists and sets whose every change is logged as data.

A store is a dict-like root (:class:`StoreRoot`) of nested store containers. Each mutation
(``store['losses'].append(0.5)``, ``del store['a'][-1]``, ``store['tags'].add('x')``...)
is an *operation*, a small JSON-like record, appended to a record file
(:mod:`klepto.records`): never code, so loading a store executes nothing. Replaying the
operations of a file gives exactly the state the writer had in memory, because the writer
builds its in-memory values from the encoded data too.

* **Commits.** Each operation is committed on its own by default (it is in the file, safe
  from a killed process, when the call returns; ``durability='durable'`` also fsyncs).
  ``batch=n`` commits every ``n`` operations instead (and on ``commit()``/``close()``/exit),
  for speed; ``with store.transaction():`` makes a block of operations one atomic commit and
  rolls the in-memory state back if the block raises. If a commit fails (a full disk), the
  error propagates and the change stays in memory and in the queue, written by the next
  commit.
* **Files.** A record file with metadata ``{"format": "klepto.oplog", "version": 1}``; each
  record is a JSON array of operations (layout in ``docs/formats.rst``). A torn last commit
  is dropped by the record file, costing at most that commit.
* **Threads.** A store is not locked: use it from one thread at a time.
* **laaos names.** :func:`create_file_store`, :func:`open_file_store`, :func:`safe_load`,
  :func:`compact`, ``WeakEnumHandler``, ``StrEnumHandler``; :func:`export` writes the
  laaos-style Python source for reading (never for loading) or JSON lines.

>>> store = create_file_store("demo", suffix="", prefix="runs/", truncate=True)
>>> store["losses"] = []
>>> for loss in (0.5, 0.25, float("nan")):
...     store["losses"].append(loss)
>>> store["losses"].pop(-2)
0.25
>>> store.close()
>>> safe_load("runs/demo.oplog")
{'losses': [0.5, nan]}
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import weakref
from collections.abc import Iterable, Iterator
from typing import Any

from klepto._fs import atomic_writer, makedirs
from klepto.errors import ArchiveClosedError
from klepto.logs._opcodec import (
    DataclassAsDictHandler,
    DataclassHandler,
    StrEnumHandler,
    TaggedValue,
    TypeHandler,
    UnknownTypeError,
    ValueCodec,
    WeakEnumHandler,
)
from klepto.logs._opnodes import DetachedError, StoreDict, StoreList, _Node, plain, set_alive, wrap
from klepto.logs._opreplay import METADATA, check_metadata, json_lines, python_lines, replay
from klepto.logs._opset import StoreSet
from klepto.logs._opwriter import LEVEL, NO_LIMIT, Writer, batch_size, dumps, finalize
from klepto.records import RecordFile, write_records

__all__ = [
    "DataclassAsDictHandler",
    "DataclassHandler",
    "DetachedError",
    "StoreDict",
    "StoreList",
    "StoreRoot",
    "StoreSet",
    "StrEnumHandler",
    "TaggedValue",
    "TypeHandler",
    "UnknownTypeError",
    "WeakEnumHandler",
    "compact",
    "create_file_store",
    "export",
    "load",
    "open_file_store",
    "open_store",
    "plain",
    "safe_load",
]

logger = logging.getLogger("klepto.logs.oplog")


class StoreRoot(StoreDict):
    """The root of an operation store at ``path``: a dict-like container plus the store's
    controls (``commit``, ``transaction``, ``compact``, ``close``).

    ``mode``: ``'a'`` open or create (continue an existing store), ``'w'`` start a new empty
    store (replacing any file atomically), ``'x'`` create, failing if it exists.
    ``initial_data`` (a dict) is the contents of a store this call creates (or of an empty
    one). ``type_handlers`` teach the store other value types (see :class:`TypeHandler`).
    ``batch``: operations per commit (default 1: every operation; ``None``: only on
    ``commit()``, ``close()`` and exit). ``durability``: ``'flush'`` survives a killed
    process, ``'durable'`` also power loss (one fsync per commit).
    """

    __slots__ = (
        "_closed",
        "_codec",
        "_finalizer",
        "_layout",
        "_limit",
        "_location",
        "_pending",
        "_txn",
        "_writer",
    )

    def __init__(
        self,
        path: str | os.PathLike[str],
        mode: str = "a",
        *,
        initial_data: dict[Any, Any] | None = None,
        type_handlers: Iterable[TypeHandler] | None = None,
        batch: int | None = 1,
        durability: str = "flush",
        lock_timeout: float = 0.0,
    ) -> None:
        if mode not in ("a", "w", "x"):
            raise ValueError(f"mode must be 'a', 'w' or 'x', not {mode!r}")
        if initial_data is not None and not isinstance(initial_data, (dict, StoreDict)):
            raise TypeError("initial_data must be a dict")
        location = os.fspath(path)
        codec = ValueCodec(type_handlers)
        file = RecordFile(
            location,
            mode,
            durability=durability,
            metadata=METADATA,
            lock_timeout=lock_timeout,
            level=LEVEL,
        )
        try:
            version = check_metadata(file.get_metadata(), location)
            state = replay(file, codec, location)
            writer = Writer(file, batch, compact=version >= 2)  # a version 1 store stays one
            if len(file) == 0 and initial_data:
                data = codec.encode(initial_data)
                state = codec.decode(data)
                writer.pending.append(("root", data))
                writer.commit()
        except BaseException:
            file.close()
            raise
        self._init_node({}, self, None, None)
        self._writer = writer
        self._pending = writer.pending  # the same list: the containers append to it
        self._limit = writer.batch  # commit when this many are pending (no limit in a block)
        self._codec = codec
        self._txn: dict[int, tuple[Any, ...]] | None = None
        self._layout = 0
        self._closed = False
        self._location = location
        for key, value in state.items():
            state[key] = wrap(value, self, self, key)
        self._data = state
        self._finalizer = weakref.finalize(self, finalize, writer)

    # --- identity -------------------------------------------------------------------------
    @property
    def path(self) -> str:
        return self._location

    @property
    def uri(self) -> str:
        """The store's file (laaos's name for it)."""
        return self._location

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def batch(self) -> int | None:
        size = self._writer.batch
        return None if size == NO_LIMIT else size

    @batch.setter
    def batch(self, value: int | None) -> None:
        self._writer.batch = batch_size(value)
        if self._txn is None:
            self._limit = self._writer.batch

    @property
    def pending(self) -> int:
        """How many operations wait for the next commit."""
        return len(self._writer.pending)

    def _path(self) -> tuple[Any, ...]:
        return ()

    def __repr__(self) -> str:
        return f"<StoreRoot {self._location!r} {self._data!r}>"

    # --- the engine the containers call ---------------------------------------------------
    def _logged(self, op: tuple[Any, ...]) -> None:
        pending = self._pending
        pending.append(op)
        if len(pending) >= self._limit:
            self._writer.commit()

    def _touch(self, node: _Node) -> None:
        """Keep ``node``'s contents as of its first change in the open transaction."""
        saved = self._txn
        assert saved is not None
        if id(node) not in saved:
            saved[id(node)] = (node, node._data.copy(), getattr(node, "_nodes", 0))

    def _undo(self, saved: dict[int, tuple[Any, ...]], mark: int) -> None:
        """Put every container changed since the transaction began back as it was."""
        added: list[_Node] = []
        removed: list[_Node] = []
        for node, old, count in saved.values():
            current = node._data
            before = {id(n): n for n in _containers(old)}
            after = {id(n): n for n in _containers(current)}
            added += [n for key, n in after.items() if key not in before]
            removed += [n for key, n in before.items() if key not in after]
            if isinstance(current, list):
                current[:] = old
                node._nodes = count
                for index, item in enumerate(current):
                    if isinstance(item, _Node):
                        item._key = index
            else:
                current.clear()
                current.update(old)
        for node in added:
            set_alive(node, False)
        for node in removed:
            set_alive(node, True)
        self._layout += 1
        del self._writer.pending[mark:]

    # --- the store's controls -------------------------------------------------------------
    def commit(self) -> bool:
        """Commit the pending operations now; False if there were none."""
        self._check()
        if self._txn is not None:
            raise RuntimeError("a transaction commits when its block ends, not on commit()")
        return self._writer.commit()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[StoreRoot]:
        """Make the block's operations one atomic commit; undo them all if it raises.

        Nested blocks join the outer one. Operations batched before the block stay pending
        and are committed with it.
        """
        self._check()
        if self._txn is not None:
            yield self
            return
        writer = self._writer
        mark = len(writer.pending)
        saved: dict[int, tuple[Any, ...]] = {}
        self._txn = saved
        self._limit = NO_LIMIT
        try:
            yield self
        except BaseException:
            self._end_transaction()
            self._undo(saved, mark)
            raise
        self._end_transaction()
        try:
            writer.commit()
        except BaseException:
            if writer.pending:  # it did not reach the file: the block never happened
                self._undo(saved, mark)
            raise

    def _end_transaction(self) -> None:
        self._txn = None
        self._limit = self._writer.batch

    def compact(self) -> None:
        """Rewrite the store's file as one snapshot of the current state (atomically)."""
        self.commit()
        record = dumps([("root", self._codec.encode(plain(self)))])
        with self._writer.file.rewrite() as fresh:
            fresh.set_metadata(METADATA)
            fresh.append(record)

    def close(self) -> None:
        """Commit what is pending and close the file. Closing twice is harmless."""
        if self._closed:
            return
        if self._txn is not None:
            raise RuntimeError("cannot close a store inside its transaction block")
        self._closed = True
        self._finalizer.detach()
        self._writer.close()

    def __enter__(self) -> StoreRoot:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _check(self) -> None:
        if self._closed:
            raise ArchiveClosedError(f"the operation store {self._location} is closed")


def _containers(data: Any) -> Iterator[_Node]:
    items = data.values() if isinstance(data, dict) else data
    if isinstance(data, set):
        return iter(())
    return (item for item in items if isinstance(item, _Node))


open_store = StoreRoot


def _store_path(store_name: str, suffix: str | None, ext: str, prefix: str) -> str:
    if suffix is None:
        suffix = time.strftime("_%Y-%m-%d-%H%M%S")
    path = f"{prefix}{store_name}{suffix}{ext}"
    directory = os.path.dirname(path)
    if directory:
        makedirs(directory)
    return path


def create_file_store(
    store_name: str = "results",
    suffix: str | None = None,
    ext: str = ".oplog",
    prefix: str = "oplog/",
    truncate: bool = False,
    initial_data: dict[Any, Any] | None = None,
    *,
    type_handlers: Iterable[TypeHandler] | None = None,
    batch: int | None = 1,
    durability: str = "flush",
) -> StoreRoot:
    """A store at ``prefix + store_name + suffix + ext`` (laaos's signature).

    ``suffix=None`` is the time, ``_YYYY-mm-dd-HHMMSS``. An existing store is continued
    (its data is kept and visible; laaos 1.1.0 hid it behind a second empty store) unless
    ``truncate=True`` starts it anew. ``initial_data`` applies only to a new store.
    """
    path = _store_path(store_name, suffix, ext, prefix)
    return StoreRoot(
        path,
        "w" if truncate else "a",
        initial_data=initial_data,
        type_handlers=type_handlers,
        batch=batch,
        durability=durability,
    )


def open_file_store(
    store_name: str = "results",
    suffix: str = "",
    ext: str = ".oplog",
    prefix: str = "oplog/",
    *,
    initial_data: dict[Any, Any] | None = None,
    type_handlers: Iterable[TypeHandler] | None = None,
    batch: int | None = 1,
    durability: str = "flush",
) -> StoreRoot:
    """Continue the store at ``prefix + store_name + suffix + ext`` (create it if missing)."""
    path = _store_path(store_name, suffix, ext, prefix)
    return StoreRoot(
        path,
        "a",
        initial_data=initial_data,
        type_handlers=type_handlers,
        batch=batch,
        durability=durability,
    )


def safe_load(
    path: str | os.PathLike[str],
    *,
    type_handlers: Iterable[TypeHandler] | None = None,
    unknown: str = "error",
) -> dict[Any, Any]:
    """The store's state as plain Python objects, by parsing its operations (no code runs).

    Values written through a tagged type handler need that handler here; ``unknown='keep'``
    returns them as :class:`TaggedValue` instead of raising :class:`UnknownTypeError`.
    Readers see the last commit, also while a writer is appending.
    """
    location = os.fspath(path)
    with RecordFile(location, "r") as file:
        check_metadata(file.get_metadata(), location)
        return replay(file, ValueCodec(type_handlers, unknown), location)


load = safe_load


def compact(src: str | os.PathLike[str], dst: str | os.PathLike[str] | None = None) -> None:
    """Rewrite the store ``src`` as one snapshot operation, into ``dst`` (default: in place).

    Both are atomic (the old file stays whole until the new one replaces it); values of
    handlers are carried over as they are, so no handler is needed. In place, this takes
    the writer lock: it fails while a writer has the store open.
    """
    source = os.fspath(src)
    codec = ValueCodec(unknown="keep")
    if dst is None or (os.path.exists(dst) and os.path.samefile(source, dst)):
        if not os.path.exists(source):
            raise FileNotFoundError(source)
        with RecordFile(source, "a") as file:
            check_metadata(file.get_metadata(), source)
            record = dumps([("root", codec.encode(replay(file, codec, source)))])
            with file.rewrite() as fresh:
                fresh.set_metadata(METADATA)
                fresh.append(record)
        return
    state = safe_load(source, unknown="keep")
    record = dumps([("root", codec.encode(state))])
    write_records(dst, [record], metadata=METADATA, level=LEVEL)


def export(
    src: str | os.PathLike[str], dst: str | os.PathLike[str], *, format: str = "jsonl"
) -> int:
    """Write the operations of the store ``src`` to ``dst`` as text; the number of lines.

    ``format='jsonl'``: one stored operation per line (JSON, for tools). ``format='py'``:
    laaos-style Python source, one statement per operation, for people to read; it is
    never meant to be executed (load the store with :func:`safe_load`).
    """
    renderers = {"jsonl": json_lines, "py": python_lines}
    if format not in renderers:
        raise ValueError(f"format must be one of {sorted(renderers)}, not {format!r}")
    source = os.fspath(src)
    count = 0
    with RecordFile(source, "r") as file:
        check_metadata(file.get_metadata(), source)
        with atomic_writer(dst) as out:
            for line in renderers[format](file, source):
                out.write(line.encode("utf-8", "backslashreplace") + b"\n")
                count += 1
    return count

"""Checkpoint + incremental log + recover, correct across crashes and restarts.

A long computation keeps its state by taking a *checkpoint* now and then and *logging* each
update in between; after a crash, :meth:`Transactional.recover` loads the newest checkpoint
and replays the log entries it does not cover::

    t = Transactional("run")                # checkpoints in an archive at run, log in run.log
    state = t.recover(create=dict, apply=step)
    for update in work():
        t.log(update)                         # in the log when log() returns
        state = step(state, update)
        if time_to_checkpoint():
            t.checkpoint(state)               # atomic; then old log segments are dropped

Guarantees (each has a regression test named after the classic design's bug):

* A value is in the log once :meth:`~Transactional.log` returns: the entry is committed to
  a record file (``durability='durable'`` also fsyncs it; the flush default survives a
  killed process, not a power loss).
* Every entry has a sequence number; a checkpoint records the last one it covers and is
  written atomically (a whole archive entry or none). Recovery applies exactly the entries
  after it, so it never applies an entry twice and never skips one, whether the process
  died right after a checkpoint, during one, during a recovery, or after a restart that
  logged more: numbering continues from what is stored, never from zero.
* Log segments are deleted only after the checkpoint covering them is stored (durably, in
  durable mode: an archive you pass must then be durable itself, as
  ``dir_archive(..., durable=True)``), and only those no kept checkpoint needs: ``keep``
  checkpoints (default 2) are kept, so a damaged newest checkpoint makes recovery fall back
  to the previous one plus the log, with a ``logging.WARNING`` -- a damaged checkpoint is
  never loaded. With ``fallback=False``, or when no checkpoint is intact, recovery raises.

Where things live: ``checkpoints`` is an archive, or a path for the default archive (a
``dir_archive``; the file archive once it exists). ``log`` is a directory for record-file
segments, or an archive; by default a path ``checkpoints`` gets the log at
``<checkpoints>.log`` and an archive keeps the log in itself. **Across hosts**: give a SQL
archive (PostgreSQL) and no ``log``: checkpoints and log entries are rows of that archive,
so a job resumed on any host that reaches the database recovers the same state. A
record-file log on shared storage is not supported across hosts (its writer lock is a local
file lock).

One writer at a time: a record-file log takes an inter-process lock at the first write
(:class:`~klepto.errors.LockedError` for a second writer); an archive log detects a second
writer when both claim the same sequence number or generation.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from klepto._fs import InterProcessLock
from klepto.archives._base import Archive
from klepto.errors import ArchiveClosedError, CorruptArchiveError, CorruptionError, KleptoError
from klepto.integrity import COMPRESSED, Packer, unseal
from klepto.logs._cptlog import ArchiveLog, SegmentLog
from klepto.logs._cptrecover import identity_apply, recover_fold, recover_in_place, recover_streams
from klepto.logs._cptstore import CheckpointRecord, CheckpointStore, backend, default_archive

__all__ = ["NoCheckpointError", "Recovery", "SimpleTransactional", "Transactional"]

logger = logging.getLogger("klepto.logs.checkpoint")

_NAME = re.compile(r"[A-Za-z0-9_.-]{1,100}\Z")


class NoCheckpointError(KleptoError, FileNotFoundError):
    """``recover`` found no checkpoint and was given no ``create`` to make the first state."""


@dataclass(frozen=True)
class Recovery:
    """What the last :meth:`Transactional.recover` did."""

    checkpoint: int  # generation loaded (0: none, the state was created)
    checkpoint_seq: int  # last sequence number that checkpoint covers
    applied: int  # log entries replayed on top of it
    last_seq: int  # the last sequence number applied
    damaged: tuple[int, ...]  # newer generations skipped because they are damaged
    created: bool  # the state came from create()


class Transactional:
    """A checkpoint store plus an incremental log (see the module docstring).

    ``serializer`` (default ``'dill'``; ``'safe'`` never runs code when loading), ``protocol``
    and ``key`` (an HMAC key that signs every checkpoint and entry) make the packer;
    ``safe=True`` refuses pickle without a key. ``durability``: ``'flush'`` or ``'durable'``.
    ``keep``: checkpoints kept (at least 1; 2 or more allows falling back past a damaged
    one). ``name`` separates several computations in one archive or log directory.
    """

    def __init__(
        self,
        checkpoints: str | os.PathLike[str] | Any = "transactional",
        log: str | os.PathLike[str] | Any | None = None,
        *,
        name: str = "default",
        serializer: str | None = "dill",
        protocol: int | None = None,
        key: bytes | str | None = None,
        safe: bool = False,
        durability: str = "flush",
        keep: int = 2,
        fallback: bool = True,
        lock_timeout: float = 0.0,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        if durability not in ("flush", "durable"):
            raise ValueError(f"durability must be 'flush' or 'durable', not {durability!r}")
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f"name must be 1-100 letters, digits, '_', '.', '-': {name!r}")
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
            raise ValueError(f"keep must be an int >= 1, not {keep!r}")
        self._packer = Packer(serializer, key=key, safe=safe, protocol=protocol)
        durable = durability == "durable"
        self._owned: Archive | None = None
        if isinstance(checkpoints, (str, os.PathLike)):
            archive = default_archive(os.fspath(checkpoints), durable, key, fallback)
            self._owned = archive
            log = os.fspath(checkpoints) + ".log" if log is None else log
        else:
            archive = backend(checkpoints)
        self._store = CheckpointStore(archive, name)
        if log is None:
            self._log: SegmentLog | ArchiveLog = ArchiveLog(archive, name)
        elif isinstance(log, (str, os.PathLike)):
            self._log = SegmentLog(log, name, durable=durable)
        else:
            self._log = ArchiveLog(backend(log), name)
        self._name = name
        self._keep = keep
        self._fallback = fallback
        self._lock_timeout = lock_timeout
        self._clock = clock
        self._lock: InterProcessLock | None = None
        self._seq: int | None = None  # last sequence number logged (None: not read yet)
        self._gen: int | None = None  # newest generation stored
        self._seqs: dict[int, int] = {}  # generation -> seq it covers, as far as known
        self._damaged: set[int] = set()
        self._closed = False
        self._mutex = threading.RLock()  # threads sharing one object take turns
        self.last_recovery: Recovery | None = None

    # --- identity and lifecycle -----------------------------------------------------------
    @property
    def name(self) -> str:
        return self._name

    @property
    def archive(self) -> Archive:
        """The archive holding the checkpoints."""
        return self._store.archive  # type: ignore[no-any-return]

    @property
    def log_location(self) -> Any:
        """The log's directory (record-file segments) or archive."""
        return self._log.location

    @property
    def seq(self) -> int:
        """The last sequence number in the log (0 before the first entry)."""
        with self._mutex:
            self._check_open()
            return self._ensure_numbering()

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Close the log and release the writer lock (and an archive made from a path)."""
        with self._mutex:
            self._close()

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._log.close()
        finally:
            lock, self._lock = self._lock, None
            if lock is not None:
                lock.release()
            if self._owned is not None:
                self._owned.close()

    def __enter__(self) -> Transactional:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._name!r} in {self.archive!s}>"

    def _check_open(self) -> None:
        if self._closed:
            raise ArchiveClosedError(f"{self!r} is closed")

    # --- writing --------------------------------------------------------------------------
    def log(self, value: Any) -> int:
        """Append ``value`` to the log; its sequence number. It is stored when this returns."""
        blob = self._packer.pack(value)  # a value that does not serialize changes nothing
        with self._mutex:
            self._check_open()
            self._claim()
            seq = self._ensure_numbering() + 1
            try:
                self._log.append(seq, blob)
            except BaseException:
                self._forget_numbering()  # the entry may have landed: ask the storage
                raise
            self._seq = seq
            return seq

    def checkpoint(self, state: Any) -> int:
        """Store ``state`` as covering every entry logged so far; the last seq it covers.

        The checkpoint is written atomically; afterwards checkpoints beyond ``keep`` and the
        log segments no kept checkpoint needs are deleted.
        """
        blob = self._packer.pack(state)
        with self._mutex:
            self._check_open()
            self._claim()
            try:
                return self._write_checkpoint(blob, self._ensure_numbering())
            except BaseException:
                self._forget_numbering()  # it may be stored, wholly or in part
                raise

    def _forget_numbering(self) -> None:
        """After a failed write, read the last seq and generation from storage again."""
        self._seq = None
        self._gen = None

    def _write_checkpoint(self, blob: bytes, seq: int) -> int:
        gen = self._newest() + 1
        self._store.write(gen, seq, self._clock(), blob)
        self._gen = gen
        self._seqs[gen] = seq
        self._log.rotate()
        self._prune(gen)
        return seq

    def _prune(self, newest: int) -> None:
        """Delete checkpoints beyond ``keep`` (intact ones count) and the log they covered."""
        kept = 0
        oldest = newest
        for gen in self._store.generations(newest):
            if gen not in self._damaged:
                kept += 1
                oldest = gen
            if kept == self._keep:
                break
        self._store.delete_below(oldest)
        floor = self._covered_by(oldest)
        if floor is not None:
            dropped = self._log.drop_through(floor)
            if dropped:
                logger.debug("%r: dropped %d log segments up to seq %d", self, dropped, floor)

    def _covered_by(self, gen: int) -> int | None:
        seq = self._seqs.get(gen)
        if seq is None:
            try:
                seq = self._store.read(gen).seq
            except CorruptionError as exc:
                logger.warning("%r: checkpoint %d is damaged (%s); keeping the log", self, gen, exc)
                self._damaged.add(gen)
                return None
            self._seqs[gen] = seq
        return seq

    def _claim(self) -> None:
        """Become the one writer (a record-file log's inter-process lock)."""
        if self._lock is None and isinstance(self._log, SegmentLog):
            lock = InterProcessLock(self._log.lock_path(), thread_local=False)
            lock.acquire(timeout=self._lock_timeout)
            self._lock = lock
            self._seq = None  # another writer may have logged before we held the lock
            self._gen = None

    def _newest(self) -> int:
        if self._gen is None:
            self._gen = self._store.latest()
        return self._gen

    def _ensure_numbering(self) -> int:
        """The last sequence number stored: the log's, or a checkpoint's if the log is empty."""
        if self._seq is None:
            floor = 0
            for gen in self._store.generations(self._newest()):
                found = self._covered_by(gen)
                if found is not None:
                    floor = found
                    break
            self._seq = self._log.last_seq(floor)
        return self._seq

    # --- recovering -----------------------------------------------------------------------
    def recover(
        self,
        *handlers: Callable[..., Any],
        create: Callable[[], Any] | None = None,
        apply: Callable[[Any, Any], Any] | None = None,
    ) -> Any:
        """The state after the newest intact checkpoint and the log entries after it.

        Three forms:

        * ``recover(create=..., apply=...)``: ``apply(state, value) -> state`` is folded
          over the entries (default: each value replaces the state). With no checkpoint,
          ``create()`` makes the initial state, which is checkpointed first (so a later
          recovery does not call ``create`` again); without ``create`` that raises
          :class:`NoCheckpointError`.
        * ``recover(log_handler)``: ``log_handler(state, value)`` changes the state in
          place (its result is ignored), as ``SimpleTransactional`` does.
        * ``recover(checkpoint_handler, log_handler)``: ``checkpoint_handler(file)`` reads
          the state from a binary file holding the checkpoint's serialized bytes;
          ``log_handler(state, file) -> state`` reads the entries to apply from a binary
          file holding their serialized bytes one after another (pickle streams for the
          pickle and dill serializers).

        Recovery only reads (apart from the first checkpoint of a created state), so it is
        idempotent: killed halfway, it gives the same state when run again.
        """
        with self._mutex:
            return self._recover(handlers, create, apply)

    def _recover(
        self,
        handlers: tuple[Callable[..., Any], ...],
        create: Callable[[], Any] | None,
        apply: Callable[[Any, Any], Any] | None,
    ) -> Any:
        self._check_open()
        if handlers and (create is not None or apply is not None):
            raise TypeError("pass handlers positionally or create=/apply=, not both")
        if len(handlers) > 2:
            raise TypeError(f"recover takes at most 2 handlers, got {len(handlers)}")
        found, damaged = self._load_newest()
        if len(handlers) == 2:
            return recover_streams(self, found, damaged, *handlers)
        if len(handlers) == 1:
            return recover_in_place(self, found, damaged, handlers[0])
        return recover_fold(self, found, damaged, create, apply or identity_apply)

    def _load_newest(self) -> tuple[CheckpointRecord | None, tuple[int, ...]]:
        """The newest intact checkpoint (None if there is none) and the damaged ones skipped."""
        newest = self._store.latest()
        damaged: list[int] = []
        for gen in self._store.generations(newest):
            try:
                record = self._store.read(gen)
                self._unseal(record.state, {"key": self._store.key("gen", gen)})
            except CorruptionError as exc:
                damaged.append(gen)
                self._damaged.add(gen)
                if not self._fallback:
                    raise
                logger.warning(
                    "%r: checkpoint %d is damaged (%s); falling back to the previous checkpoint"
                    " and the log",
                    self,
                    gen,
                    exc,
                )
                continue
            self._seqs[gen] = record.seq
            return record, tuple(damaged)
        if damaged:
            raise CorruptArchiveError(
                f"every checkpoint of {self._name!r} is damaged (generations {damaged}); "
                "nothing was loaded"
            )
        return None, ()

    def _unseal(self, blob: bytes, where: dict[Any, Any]) -> bytes:
        """The serialized payload of ``blob`` after its checksum (and signature) checks."""
        payload, flags = unseal(blob, key=self._packer.key, where=where)
        if flags & COMPRESSED:
            raise CorruptionError("unexpected compressed payload", **where)
        return payload

    def _finish(
        self,
        found: CheckpointRecord | None,
        damaged: tuple[Any, ...],
        applied: int,
        last: int,
        created: bool = False,
    ) -> None:
        gen = found.gen if found else 0
        seq = found.seq if found else 0
        self.last_recovery = Recovery(gen, seq, applied, last, damaged, created)
        if damaged:
            logger.warning(
                "%r: recovered from checkpoint %d (seq %d) and %d log entries, skipping damaged"
                " checkpoints %s",
                self,
                gen,
                seq,
                applied,
                list(damaged),
            )


class SimpleTransactional(Transactional):
    """The classic surface: ``SimpleTransactional(checkpoint=..., log=...)`` with paths.

    ``checkpoint`` is where the checkpoint archive lives, ``log`` the directory of log
    segments (both created on first use). Checkpoints and entries are pickled
    (``pickleprotocol``; ``picklemode`` is accepted and ignored: there is no text mode).
    ``recover(value_handler)`` calls ``value_handler(state, value)`` for each entry to
    change the state in place; ``recover(checkpoint_handler, log_handler)`` hands them
    binary files of pickles. Everything :class:`Transactional` guarantees holds.
    """

    def __init__(
        self,
        checkpoint: str | os.PathLike[str] = "transactional.cpt",
        log: str | os.PathLike[str] = "transactional.log",
        picklemode: int = 0,
        pickleprotocol: int | None = None,
        **options: Any,
    ) -> None:
        options.setdefault("serializer", "pickle")
        options.setdefault("protocol", pickleprotocol)
        super().__init__(checkpoint, log, **options)
        self._cpt_path = os.fspath(checkpoint)
        self._log_path = os.fspath(log)

    @property
    def cpt_path(self) -> str:
        return self._cpt_path

    @property
    def log_path(self) -> str:
        return self._log_path

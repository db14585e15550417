"""Where checkpoints live inside an archive, with checked reads and atomic writes.

Keys are tuples headed by ``"klepto.cpt"`` and the namespace (layout in
``docs/formats.rst``, "Checkpoint")::

    (PREFIX, ns, "gen", g)    {"format", "version", "gen", "seq", "time", "state"}  written once
    (PREFIX, ns, "head")      int hint: the newest generation written                overwritten

Generation ``g`` is the ``g``-th checkpoint; ``seq`` is the last log sequence number it
covers; ``state`` is the state sealed by the checkpoint's :class:`~klepto.integrity.Packer`
(checksummed, optionally signed). A generation record is stored with the archive's atomic
``add``: it is there whole or not at all, and a second writer cannot overwrite it. The live
generations are a gap-free range (older ones are deleted oldest first), so the newest is
found from the hint plus a few probes.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

from klepto._fs import makedirs
from klepto.archives import cache, null_archive
from klepto.archives._base import Archive
from klepto.errors import CorruptArchiveError, CorruptionError, LockedError
from klepto.logs._branchstore import checked_int, gallop

__all__ = [
    "FORMAT",
    "PREFIX",
    "VERSION",
    "CheckpointRecord",
    "CheckpointStore",
    "backend",
    "default_archive",
]

PREFIX = "klepto.cpt"
FORMAT = "klepto.checkpoint"
VERSION = 1

logger = logging.getLogger("klepto.logs.checkpoint")


@dataclass(frozen=True)
class CheckpointRecord:
    """One stored checkpoint: generation, last covered sequence number, time, sealed state."""

    gen: int
    seq: int
    time_ns: int
    state: bytes


class CheckpointStore:
    """The checkpoint keys of one namespace of an archive."""

    def __init__(self, archive: Any, namespace: str) -> None:
        self.archive = archive
        self.namespace = namespace

    def key(self, *parts: Any) -> tuple[Any, ...]:
        return (PREFIX, self.namespace, *parts)

    def exists(self, gen: int) -> bool:
        if gen <= 0:
            return False
        try:
            return self.key("gen", gen) in self.archive
        except CorruptionError:
            # An archive that reads the entry to answer found it damaged: it is there, and
            # read() reports the damage to recovery, which falls back past it or raises.
            return True

    def latest(self) -> int:
        """The newest generation stored (0: none), adopting any written after the hint."""
        key = self.key("head")
        try:
            hinted = self.archive[key]
        except KeyError:
            hinted = 0
        hinted = checked_int(hinted, key, "checkpoint head")
        if hinted and not self.exists(hinted):
            raise CorruptArchiveError(f"checkpoint head names missing generation {hinted}", key=key)
        return gallop(self.exists, hinted)

    def write(self, gen: int, seq: int, time_ns: int, state: bytes) -> None:
        """Store generation ``gen`` atomically, then point the head hint at it."""
        value = {
            "format": FORMAT,
            "version": VERSION,
            "gen": gen,
            "seq": seq,
            "time": time_ns,
            "state": state,
        }
        if not self.archive.add(self.key("gen", gen), value):
            raise LockedError(
                f"checkpoint {gen} of {self.namespace!r} was written by another writer first"
            )
        self.archive[self.key("head")] = gen

    def read(self, gen: int) -> CheckpointRecord:
        """Generation ``gen``; damage (of the archive entry or its fields) raises."""
        key = self.key("gen", gen)
        value = self.archive[key]
        if not isinstance(value, dict) or value.get("format") != FORMAT:
            raise CorruptArchiveError("not a checkpoint record", key=key)
        if value.get("version") != VERSION:
            raise ValueError(
                f"checkpoint format version {value.get('version')!r} is not supported "
                f"(this klepto reads version {VERSION})"
            )
        if value.get("gen") != gen:
            raise CorruptArchiveError(
                "checkpoint record is stored under another generation", key=key
            )
        state = value.get("state")
        if not isinstance(state, bytes):
            raise CorruptArchiveError("checkpoint state is not bytes", key=key)
        seq = checked_int(value.get("seq"), key, "checkpoint seq")
        return CheckpointRecord(gen, seq, checked_int(value.get("time"), key, "time"), state)

    def generations(self, newest: int) -> list[int]:
        """The stored generations up to ``newest``, newest first."""
        found = []
        gen = newest
        while self.exists(gen):
            found.append(gen)
            gen -= 1
        return found

    def delete_below(self, gen: int) -> None:
        """Delete every generation older than ``gen``, oldest first.

        Oldest first keeps the live generations a gap-free range even if this is cut short.
        """
        doomed = self.generations(gen - 1)
        for old in reversed(doomed):
            del self.archive[self.key("gen", old)]
            logger.debug("deleted checkpoint %d of %r", old, self.namespace)


def backend(archive: Any) -> Archive:
    if isinstance(archive, cache):
        archive = archive.archive  # every write must reach storage at once
    if not isinstance(archive, Archive):
        raise TypeError(f"expected a klepto archive or a path, got {type(archive).__name__}")
    if isinstance(archive, null_archive):
        raise ValueError("a null_archive keeps nothing; give a real archive")
    return archive


def default_archive(path: str, durable: bool, key: bytes | str | None, fallback: bool) -> Archive:
    """The archive a path names: the file archive when klepto has one, else a directory.

    Its values are the checkpoint records (plain data: ints, str, the sealed state bytes),
    so it uses the ``safe`` serializer and never unpickles anything itself. A file archive
    whose last commit is damaged is opened as of its last intact commit when ``fallback``
    allows (with a warning): that commit is at most the newest checkpoint, and recovery
    then falls back to the previous one plus the log.
    """
    from klepto import archives

    makedirs(os.path.dirname(os.path.abspath(path)))
    file_archive = getattr(archives, "file_archive", None)
    if file_archive is None:
        return archives.dir_archive(path, cached=False, serializer="safe", key=key, durable=durable)  # type: ignore[no-any-return]
    options = {"cached": False, "serializer": "safe", "key": key, "durable": durable}
    try:
        return file_archive(path, **options)  # type: ignore[no-any-return]
    except CorruptionError as exc:
        if not fallback or not os.path.isfile(path):
            raise
        logger.warning(
            "checkpoint archive %s is damaged (%s); opening it as of its last intact commit"
            " and falling back to the checkpoints there",
            path,
            exc,
        )
        return file_archive(path, repair=True, **options)  # type: ignore[no-any-return]

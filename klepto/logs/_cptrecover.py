"""The three forms of :meth:`klepto.logs.checkpoint.Transactional.recover`.

``Transactional`` loads the newest intact checkpoint (``found``, ``None`` when there is
none) and hands it here with the damaged generations it skipped; each form replays the log
entries after that checkpoint onto its state and records what it did
(``Transactional.last_recovery``):

* :func:`recover_fold`, ``recover(create=..., apply=...)``: ``apply(state, value)`` folded
  over the entries; a missing checkpoint is made by ``create()`` and stored first;
* :func:`recover_in_place`, ``recover(log_handler)``: ``log_handler(state, value)``
  changes the state in place;
* :func:`recover_streams`, ``recover(checkpoint_handler, log_handler)``: the handlers read
  binary files of the serialized checkpoint and entries.

Recovery only reads (apart from the first checkpoint of a created state), so it is
idempotent: killed halfway, it gives the same state when run again.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # annotations only: checkpoint imports this module
    from klepto.logs._cptstore import CheckpointRecord
    from klepto.logs.checkpoint import Transactional

__all__ = ["identity_apply", "recover_fold", "recover_in_place", "recover_streams"]


def identity_apply(state: Any, value: Any) -> Any:
    return value


def recover_fold(
    t: Transactional,
    found: CheckpointRecord | None,
    damaged: tuple[Any, ...],
    create: Callable[[], Any] | None,
    apply: Callable[[Any, Any], Any],
) -> Any:
    from klepto.logs.checkpoint import NoCheckpointError  # (checkpoint imports this module)

    created = found is None
    if found is None:
        if create is None:
            raise NoCheckpointError(f"no checkpoint of {t._name!r} and no create= given")
        state = create()
        t._claim()
        t._write_checkpoint(t._packer.pack(state), 0)
        start = 0
    else:
        state = t._packer.unpack(found.state)
        start = found.seq
    applied, last = 0, start
    for seq, blob in t._log.entries(start):
        state = apply(state, t._packer.unpack(blob))
        applied, last = applied + 1, seq
    t._finish(found, damaged, applied, last, created)
    return state


def recover_in_place(
    t: Transactional,
    found: CheckpointRecord | None,
    damaged: tuple[Any, ...],
    handler: Callable[..., Any],
) -> Any:
    from klepto.logs.checkpoint import NoCheckpointError

    if found is None:
        raise NoCheckpointError(f"no checkpoint of {t._name!r} to recover from")
    state = t._packer.unpack(found.state)
    applied, last = 0, found.seq
    for seq, blob in t._log.entries(found.seq):
        handler(state, t._packer.unpack(blob))
        applied, last = applied + 1, seq
    t._finish(found, damaged, applied, last)
    return state


def recover_streams(
    t: Transactional,
    found: CheckpointRecord | None,
    damaged: tuple[Any, ...],
    checkpoint_handler: Callable[..., Any],
    log_handler: Callable[..., Any],
) -> Any:
    from klepto.logs.checkpoint import NoCheckpointError

    if found is None:
        raise NoCheckpointError(f"no checkpoint of {t._name!r} to recover from")
    where = {"key": t._store.key("gen", found.gen)}
    state = checkpoint_handler(io.BytesIO(t._unseal(found.state, where)))
    stream = io.BytesIO()
    applied, last = 0, found.seq
    for seq, blob in t._log.entries(found.seq):
        stream.write(t._unseal(blob, {"key": ("log", seq)}))
        applied, last = applied + 1, seq
    stream.seek(0)
    state = log_handler(state, stream)
    t._finish(found, damaged, applied, last)
    return state

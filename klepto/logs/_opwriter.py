"""The writing end of an operation store: pending operations and the commits that store them.

Operations wait in a list until a commit turns them into records (JSON arrays of at most
``CHUNK`` operations) of the store's record file and commits those atomically. One
operation committed alone (the default: a commit per operation) is one record, committed
with :meth:`RecordFile.commit_record`: one sealed record, one system call. If a commit
fails, the operations stay pending (unless their data reached the file whole) and the file
is rolled back, so a later commit writes each of them exactly once.
"""

from __future__ import annotations

import logging
from typing import Any

from klepto.logs._oprecord import OpEncoder, dumps
from klepto.records import RecordFile

__all__ = ["CHUNK", "LEVEL", "NO_LIMIT", "Writer", "batch_size", "dumps", "finalize"]

logger = logging.getLogger("klepto.logs.oplog")

CHUNK = 4096  # operations per record when many are committed at once
NO_LIMIT = 1 << 62
# Logs are written far more than read: the fastest zlib level compresses op records about as
# well as the default (measured: 11.0 vs 10.3 bytes per float append) at a third of the cost.
LEVEL = 1


class Writer:
    """The record file behind a store and the operations not yet committed to it.

    It holds no reference to the store, so a forgotten store can be collected and its
    finalizer still commits what is pending.
    """

    def __init__(self, file: RecordFile, batch: int | None, *, compact: bool) -> None:
        self.file = file
        self.pending: list[tuple[Any, ...]] = []
        self.batch = batch_size(batch)
        self.record = OpEncoder(compact).record
        self.commit_record = file.committer()  # the store is used from one thread at a time
        self.committed = file.committed_count  # records committed, as far as this knows

    def commit(self) -> bool:
        """Write every pending operation in one atomic commit; False if none was pending."""
        pending = self.pending
        if len(pending) == 1:
            try:
                self.committed = self.commit_record(self.record(pending[0])) + 1
            except BaseException:
                file = self.file
                if not file.closed and file.committed_count > self.committed:
                    pending.clear()  # its record reached the file whole: it counts
                raise
            pending.clear()
            return True
        if not pending:
            return False
        file = self.file
        before = file.committed_count
        try:
            for start in range(0, len(pending), CHUNK):
                file.append(dumps(pending[start : start + CHUNK]))
        except BaseException:
            file.rollback()  # nothing half-appended may ride along with a later commit
            raise
        try:
            file.commit()
        except BaseException:
            if not file.closed:
                if file.committed_count > before:
                    pending.clear()  # its data reached the file whole: it counts
                else:
                    file.rollback()  # retried whole by the next commit, never twice
                self.committed = file.committed_count
            raise
        pending.clear()
        self.committed = file.committed_count
        return True

    def close(self) -> None:
        try:
            self.commit()
        finally:
            self.file.close()


def finalize(writer: Writer) -> None:
    """Commit and close a store that was never closed (collected, or at interpreter exit)."""
    try:
        writer.close()
    except Exception:  # no caller is left to raise to: report it loudly instead
        logger.exception("could not commit the operations of an unclosed store %s", writer.file)


def batch_size(batch: int | None) -> int:
    if batch is None:
        return NO_LIMIT  # commit only when asked (commit(), close(), transaction end)
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be a positive int or None, not {batch!r}")
    return batch

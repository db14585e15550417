"""A drop-in replacement for CaptureFile 1.2.0's API over :class:`klepto.records.RecordFile`.

Record numbers are 1-based (``record_at(1)`` is the first record) and ``cf[a:b]`` returns
records ``a .. b - 1``, as in CaptureFile. Differences, all fixes: ``cf[:3]`` works (start
defaults to 1), negative positions count from the end, ``len(cf)`` exists, ``str`` records
are written in ``encoding`` (CaptureFile always used UTF-8), metadata is fresh after
``refresh()``, one object is safe to share between threads, and the OS writer lock is on by
default. The file format is klepto's, not CaptureFile's: convert old files by reading them
with CaptureFile and appending their records here.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from klepto.records import (
    InvalidRecordFile,
    RecordFile,
    RecordFileClosed,
    RecordFileLocked,
    RecordFileReadOnly,
)


class CaptureFileAlreadyOpen(RecordFileLocked):
    """The object is already open, or another writer has the file open for writing."""


class CaptureFileNotOpen(RecordFileClosed):
    """The operation needs an open file."""


class CaptureFileNotOpenForWrite(RecordFileReadOnly):
    """The operation needs the file open for writing."""


class InvalidCaptureFile(InvalidRecordFile):
    """The file is not a (klepto) capture file, or it is damaged beyond recovery."""


class CaptureFile:
    """CaptureFile's API (1-based records) on a klepto record file."""

    def __init__(
        self,
        file_name: str | os.PathLike[str],
        to_write: bool = False,
        initial_metadata: bytes | None = None,
        force_new_empty_file: bool = False,
        encoding: str | None = "utf_8",
        use_os_file_locking: bool = True,
        compression_block_size: int | None = None,
    ) -> None:
        if compression_block_size is not None and (
            compression_block_size <= 0 or compression_block_size % 4096
        ):
            raise ValueError("compression_block_size must be a positive multiple of 4096")
        self.file_name = os.fspath(file_name)
        self.encoding = encoding
        self.use_os_file_locking = use_os_file_locking
        self.initial_metadata = initial_metadata
        self.compression_block_size = compression_block_size
        self.to_write = to_write
        self._file: RecordFile | None = None
        self._last_count = 0
        self._open(to_write, force_new_empty_file)

    def open(self, to_write: bool = False) -> None:
        """Open the file again (for reading, or writing with ``to_write=True``)."""
        self._open(to_write, False)

    def _open(self, to_write: bool, force_new: bool) -> None:
        if self._file is not None:
            raise CaptureFileAlreadyOpen(f'Capture file "{self.file_name}" is already open.')
        options: dict[str, Any] = {}
        if self.compression_block_size is not None:
            options["frame_size"] = self.compression_block_size
        mode = ("w" if force_new else "a") if to_write else "r"
        try:
            self._file = RecordFile(
                self.file_name,
                mode,
                encoding=self.encoding,
                metadata=self.initial_metadata,
                lock=self.use_os_file_locking,
                **options,
            )
        except RecordFileLocked as exc:
            raise CaptureFileAlreadyOpen(str(exc)) from exc
        except InvalidRecordFile as exc:
            raise InvalidCaptureFile(exc.reason, path=exc.path, offset=exc.offset) from exc
        self.to_write = to_write

    def close(self) -> None:
        """Close the file; records not committed are discarded."""
        file, self._file = self._file, None
        if file is not None:
            self._last_count = file.committed_count
            file.close()

    def __del__(self) -> None:
        if getattr(self, "_file", None) is not None:
            self.close()

    def __enter__(self) -> CaptureFile:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _opened(self, action: str) -> RecordFile:
        file = self._file
        if file is None:
            raise CaptureFileNotOpen(f'Cannot {action} "{self.file_name}" because it is not open.')
        return file

    def _writing(self, action: str) -> RecordFile:
        file = self._opened(action)
        if not self.to_write:
            raise CaptureFileNotOpenForWrite(
                f'Cannot {action} "{self.file_name}" because it is not open for writing.'
            )
        return file

    # --- writing --------------------------------------------------------------------------
    def add_record(self, record: str | bytes) -> int:
        """Append a record; return the new record count (so, its 1-based number)."""
        file = self._file
        if file is None or not self.to_write:  # the checks inline: this is the hot path
            file = self._writing("add a record to")
        return file.append(record) + 1

    def commit(self) -> None:
        self._writing("commit").commit()

    def set_metadata(self, new_metadata: bytes | None) -> None:
        self._writing("set the metadata of").set_metadata(new_metadata)

    # --- reading --------------------------------------------------------------------------
    def get_metadata(self) -> bytes | None:
        return self._opened("get the metadata of").get_metadata()

    def refresh(self) -> None:
        self._opened("refresh").refresh()

    def record_count(self) -> int:
        """Records as of opening or the last ``refresh()`` (a writer: including uncommitted)."""
        file = self._file
        return self._last_count if file is None else len(file)

    def __len__(self) -> int:
        return len(self._opened("count the records of"))

    def record_at(self, record_number: int) -> Any:
        """Record ``record_number``, 1-based; ``IndexError`` outside ``1 .. record_count()``."""
        file = self._opened("get record from")
        if not 1 <= record_number <= len(file):
            raise IndexError(f"record number {record_number} out of range 1..{len(file)}")
        return file[record_number - 1]

    def record_generator(self, starting_record_number: int = 1) -> Iterator[Any]:
        """Records from ``starting_record_number`` (1-based) to the count at this call."""
        file = self._opened("iterate over")
        if starting_record_number < 1:
            raise IndexError(f"record number {starting_record_number} is not 1-based")
        start = min(starting_record_number - 1, len(file))
        return file.records(start)

    def __iter__(self) -> Iterator[Any]:
        return self.record_generator(1)

    def __getitem__(self, key: int | slice) -> Any:
        if not isinstance(key, slice):
            count = len(self._opened("get record from"))
            return self.record_at(key + count + 1 if key < 0 else key)
        file = self._opened("get records from")
        count = len(file)
        start = self._zero_based(key.start, count, 0)
        stop = self._zero_based(key.stop, count, count)
        return file[start : stop : key.step]

    @staticmethod
    def _zero_based(position: int | None, count: int, default: int) -> int:
        """A 1-based slice bound (negative: from the end) as a 0-based one."""
        if position is None:
            return default
        if position == 0:
            raise IndexError("record numbers are 1-based; 0 is not a record")
        return position - 1 if position > 0 else max(count + position, 0)

    def __str__(self) -> str:
        file = self._file
        if file is None:
            return (
                f'"{self.file_name}" currently closed but last seen with '
                f"{self._last_count:,} records"
            )
        how = "writing" if self.to_write else "reading"
        return f'"{self.file_name}" opened for {how} with {len(file):,} records'

    def __repr__(self) -> str:
        return f"<CaptureFile {self}>"

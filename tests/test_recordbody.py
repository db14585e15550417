"""klepto._recordbody.LargeRecord: a large record read whole into a new buffer (not zeroed
first, ending aligned, checked before it is returned) and peeked at from bytes read already.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from klepto import _recordbody
from klepto._crc import crc32
from klepto._recordbody import LargeRecord
from klepto.archives import file_archive
from klepto.errors import CorruptArchiveError, CorruptRecordError

SIZE = 300_007  # odd: the buffer needs padding for its end to be aligned


@pytest.fixture(params=["numpy", "bytearray"])
def allocator(request, monkeypatch) -> str:
    """Both ways a buffer is made: numpy.empty when numpy is loaded, else a bytearray (as
    if numpy were not loaded: _recordbody alone is shown no modules)."""
    pytest.importorskip("numpy")
    if request.param == "bytearray":
        monkeypatch.setattr(_recordbody, "sys", SimpleNamespace(modules={}))
    return str(request.param)


@pytest.fixture
def stored(tmp_path: Path) -> Any:
    """A file holding ``SIZE`` record bytes at offset 100; yields (fd, body, path)."""
    body = os.urandom(SIZE)
    path = tmp_path / "records"
    path.write_bytes(b"x" * 100 + body + b"y" * 50)
    fd = os.open(path, os.O_RDONLY)
    yield fd, body, str(path)
    os.close(fd)


def _record(stored: Any, crc: int | None = None, head: bytes = b"") -> LargeRecord:
    fd, body, path = stored
    return LargeRecord(fd, 100, SIZE, crc32(body) if crc is None else crc, path, 68, head)


def test_whole_is_the_record_writable_and_ends_aligned(stored, allocator) -> None:
    view = _record(stored).whole()
    assert bytes(view) == stored[1] and not view.readonly
    assert (type(view.obj) is bytearray) == (allocator == "bytearray")
    pad = len(memoryview(view.obj).cast("B")) - SIZE  # the bytes before the record
    assert 0 <= pad < 16 and bytes(memoryview(view.obj).cast("B")[:pad]) == bytes(pad)
    if allocator == "numpy":
        import numpy

        end = numpy.frombuffer(view, "u1").__array_interface__["data"][0] + SIZE
        assert end % 16 == 0


def test_whole_refuses_a_checksum_mismatch(stored, allocator) -> None:
    with pytest.raises(CorruptRecordError) as caught:
        _record(stored, crc=crc32(stored[1]) ^ 1).whole()
    assert (caught.value.path, caught.value.offset) == (stored[2], 68)
    assert "checksum" in str(caught.value)


def test_whole_refuses_a_truncated_record(stored, allocator) -> None:
    os.truncate(stored[2], 100 + SIZE - 1)
    with pytest.raises(CorruptRecordError) as caught:
        _record(stored).whole()
    assert caught.value.offset == 68 and "truncated" in str(caught.value)


def test_peek_uses_the_bytes_read_already(stored, monkeypatch) -> None:
    reads: list[int] = []
    original = _recordbody.pread

    def counting(fd: int, size: int, offset: int) -> bytes:
        reads.append(size)
        return original(fd, size, offset)

    monkeypatch.setattr(_recordbody, "pread", counting)
    body = stored[1]
    large = _record(stored, head=body[:1000])
    assert large.peek(21) == body[:21] and large.peek(1000) == body[:1000] and not reads
    assert large.peek(1001) == body[:1001] and reads == [1001]  # beyond them: read
    assert _record(stored).peek(30) == body[:30] and reads == [1001, 30]  # none given


def test_peek_never_passes_the_record(stored) -> None:
    """Bytes read past the record (the frame read's slack) are never peeked at."""
    body = stored[1]
    large = LargeRecord(stored[0], 100, 40, crc32(body[:40]), stored[2], 68, body[:100])
    assert large.peek(4096) == body[:40]


def test_file_archive_arrays_come_back_aligned_and_writable(tmp_path: Path, allocator) -> None:
    import numpy

    archive = file_archive(str(tmp_path / "memo.pkl"), cached=False)
    for key in ("a", "key-1", "x" * 37):  # key envelopes of several lengths
        archive[key] = numpy.arange(100_000, dtype="f8")
    again = file_archive(str(tmp_path / "memo.pkl"), cached=False)
    for key in ("a", "key-1", "x" * 37):
        value = again[key]
        assert value.flags.aligned and value.flags.writeable
        assert value.tolist() == list(range(100_000))


def test_file_archive_damage_in_a_large_array_names_the_file(tmp_path: Path) -> None:
    numpy = pytest.importorskip("numpy")
    path = tmp_path / "memo.pkl"
    archive = file_archive(str(path), cached=False)
    archive["k"] = numpy.arange(100_000, dtype="f8")
    data = bytearray(path.read_bytes())
    at = data.find(numpy.arange(100_000, dtype="f8")[5000:5001].tobytes())
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptArchiveError) as caught:
        file_archive(str(path), cached=False)["k"]
    assert str(path) in str(caught.value) and caught.value.offset is not None

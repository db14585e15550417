"""klepto's CaptureFile facade: CaptureFile 1.2.0's API and 1-based numbering, its bugs fixed.

Where the original package is installed, the same calls run on both and must agree.
"""

from __future__ import annotations

import io
import os
import threading

import pytest

from klepto.errors import ArchiveClosedError, CorruptRecordError, LockedError
from klepto.records import (
    CaptureFile,
    CaptureFileAlreadyOpen,
    CaptureFileNotOpen,
    CaptureFileNotOpenForWrite,
    InvalidCaptureFile,
    RecordFile,
)

try:  # the original, for side-by-side parity checks
    from CaptureFile import CaptureFile as OriginalCaptureFile
except ImportError:  # pragma: no cover - the bench extra installs it
    OriginalCaptureFile = None

IMPLEMENTATIONS = [pytest.param(CaptureFile, id="klepto")]
if OriginalCaptureFile is not None:
    IMPLEMENTATIONS.append(pytest.param(OriginalCaptureFile, id="CaptureFile-1.2.0"))


@pytest.fixture(params=IMPLEMENTATIONS)
def impl(request):
    return request.param


def _filled(cls, path, n=10, **kwds):
    cf = cls(path, to_write=True, initial_metadata=b"m0", **kwds)
    for i in range(n):
        cf.add_record(f"rec{i}")
    cf.commit()
    return cf


def test_common_behaviour_matches_the_original(impl, tmp_path):
    """Calls both implementations accept, with the answers both give."""
    path = str(tmp_path / "x.cf")
    cf = _filled(impl, path)
    assert cf.record_count() == 10
    assert cf.record_at(1) == "rec0" and cf.record_at(10) == "rec9"
    assert cf[1] == "rec0"
    assert list(cf[2:4]) == ["rec1", "rec2"]  # 1-based, exclusive stop
    assert list(cf[3:]) == ["rec2", "rec3", "rec4", "rec5", "rec6", "rec7", "rec8", "rec9"]
    assert list(cf[1:10:3]) == ["rec0", "rec3", "rec6"]
    assert list(cf.record_generator(8)) == ["rec7", "rec8", "rec9"]
    assert list(cf.record_generator(11)) == []
    assert list(cf) == [f"rec{i}" for i in range(10)]
    for bad in (0, 11):
        with pytest.raises(IndexError):
            cf.record_at(bad)
    assert cf.get_metadata() == b"m0"
    assert cf.add_record(b"bytes too") == 11
    cf.set_metadata(b"m1")
    cf.commit()
    assert str(cf) == f'"{path}" opened for writing with 11 records'
    with pytest.raises(Exception) as caught:
        cf.open()
    assert type(caught.value).__name__ == "CaptureFileAlreadyOpen"
    cf.close()
    cf.close()
    assert cf.record_count() == 11  # the last count seen, even closed
    assert str(cf) == f'"{path}" currently closed but last seen with 11 records'
    cf.open()
    assert str(cf) == f'"{path}" opened for reading with 11 records'
    assert cf.get_metadata() == b"m1" and cf.record_at(11) == "bytes too"
    cf.close()
    with impl(path) as again:
        assert again.record_count() == 11


def test_exceptions_match_the_original_names(impl, tmp_path):
    path = str(tmp_path / "x.cf")
    cf = _filled(impl, path)
    cf.close()
    with pytest.raises(Exception) as caught:
        cf.record_at(1)
    assert type(caught.value).__name__ == "CaptureFileNotOpen"
    cf.open()
    for call in (lambda: cf.add_record("x"), cf.commit, lambda: cf.set_metadata(b"")):
        with pytest.raises(Exception) as caught:
            call()
        assert type(caught.value).__name__ == "CaptureFileNotOpenForWrite"
    cf.close()
    junk = tmp_path / "junk"
    junk.write_bytes(b"hello" * 1000)
    with pytest.raises(Exception) as caught:
        impl(str(junk))
    assert type(caught.value).__name__ == "InvalidCaptureFile"
    with pytest.raises(FileNotFoundError):
        impl(str(tmp_path / "missing.cf"))


def test_exception_hierarchy():
    assert issubclass(CaptureFileAlreadyOpen, LockedError)
    assert issubclass(CaptureFileNotOpen, ArchiveClosedError)
    assert issubclass(CaptureFileNotOpenForWrite, io.UnsupportedOperation)
    assert issubclass(InvalidCaptureFile, CorruptRecordError)


def test_fixed_slices_and_negative_positions(tmp_path):
    with _filled(CaptureFile, str(tmp_path / "x.cf")) as cf:
        assert cf[:3] == ["rec0", "rec1"]  # CaptureFile 1.2.0 raised TypeError here
        assert cf[:] == [f"rec{i}" for i in range(10)]
        assert cf[-1] == "rec9" and cf[-10] == "rec0"
        assert cf[2:-1] == [f"rec{i}" for i in range(1, 9)]
        assert cf[-2:] == ["rec8", "rec9"]
        assert cf[5:2] == []
        assert len(cf) == 10
        with pytest.raises(IndexError):
            cf[0:3]  # 0 is not a record number
        with pytest.raises(IndexError):
            cf[-11]


def test_metadata_is_fresh_after_refresh(tmp_path):
    path = str(tmp_path / "x.cf")
    writer = _filled(CaptureFile, path)
    reader = CaptureFile(path)
    assert reader.get_metadata() == b"m0"
    writer.set_metadata(b"m1")
    writer.add_record("new")
    writer.commit()
    assert reader.get_metadata() == b"m0" and reader.record_count() == 10
    reader.refresh()  # CaptureFile 1.2.0 kept returning b"m0" here
    assert reader.get_metadata() == b"m1" and reader.record_count() == 11
    writer.close()
    reader.close()


def test_writer_lock_on_by_default(tmp_path):
    path = str(tmp_path / "x.cf")
    writer = _filled(CaptureFile, path)
    with pytest.raises(CaptureFileAlreadyOpen):
        CaptureFile(path, to_write=True)
    with pytest.raises(CaptureFileAlreadyOpen):
        CaptureFile(path, to_write=True, use_os_file_locking=False)
    writer.close()
    CaptureFile(path, to_write=True).close()


def test_encoding_is_used_for_writing(tmp_path):
    path = str(tmp_path / "x.cf")
    with CaptureFile(path, to_write=True, encoding="latin-1") as cf:
        cf.add_record("café")
        cf.commit()
        assert cf.record_at(1) == "café"
    with CaptureFile(path, encoding=None) as cf:
        assert cf.record_at(1) == "café".encode("latin-1")


def test_force_new_empty_file_and_block_size(tmp_path):
    path = str(tmp_path / "x.cf")
    _filled(CaptureFile, path).close()
    with CaptureFile(path, to_write=True, force_new_empty_file=True, initial_metadata=b"n") as cf:
        assert cf.record_count() == 0 and cf.get_metadata() == b"n"
    with pytest.raises(ValueError):
        CaptureFile(str(tmp_path / "y.cf"), to_write=True, compression_block_size=1000)
    with CaptureFile(str(tmp_path / "y.cf"), to_write=True, compression_block_size=8192) as cf:
        cf.add_record("r")
        cf.commit()
    assert RecordFile(str(tmp_path / "y.cf"))._header.frame_size == 8192


def test_writer_reads_its_uncommitted_records(tmp_path):
    with CaptureFile(str(tmp_path / "x.cf"), to_write=True) as cf:
        cf.add_record("a")
        assert cf.record_count() == 1 and cf.record_at(1) == "a"
    with CaptureFile(str(tmp_path / "x.cf")) as cf:
        assert cf.record_count() == 0  # closing discarded it


def test_shared_reader_across_threads(tmp_path):
    """CaptureFile 1.2.0 returned 40-299 wrong or failed lookups per 12k in this setup."""
    path = str(tmp_path / "x.cf")
    with CaptureFile(path, to_write=True) as cf:
        for i in range(5000):
            cf.add_record(f"record number {i} " + "x" * (i % 97))
        cf.commit()
    cf = CaptureFile(path)
    bad = []

    def work(seed):
        for k in range(seed, 5000, 7):
            if cf.record_at(k + 1) != f"record number {k} " + "x" * (k % 97):
                bad.append(k)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    cf.close()
    assert bad == []


def test_does_not_leak_when_dropped(tmp_path):
    path = str(tmp_path / "x.cf")
    before = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else 0
    for _ in range(50):
        _filled(CaptureFile, path, n=2)  # dropped without close
    CaptureFile(path, to_write=True).close()
    if before:
        assert len(os.listdir("/proc/self/fd")) <= before + 2

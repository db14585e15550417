"""A record larger than 4 GiB streams in and out without being held whole (full runs only).

The record is a repeating pattern, so the compressed file stays small and the test costs
CPU, not disk; lengths past 2**32 exercise the u64 length fields end to end.
"""

from __future__ import annotations

import hashlib

import pytest

from klepto.records import RecordFile

CHUNK = bytes(range(256)) * 4096  # 1 MiB
SIZE = (4 << 30) + CHUNK.__len__() + 123  # just past 4 GiB


def _chunks():
    left = SIZE
    while left:
        piece = CHUNK[: min(left, len(CHUNK))]
        left -= len(piece)
        yield piece


@pytest.mark.full
@pytest.mark.slow
def test_record_larger_than_4_gib_round_trips(tmp_path):
    path = tmp_path / "huge.krf"
    expected = hashlib.blake2b(digest_size=16)
    for piece in _chunks():
        expected.update(piece)
    with RecordFile(path, "a") as records:
        records.append(b"before")
        number = records.append_stream(_chunks())
        records.append(b"after")
        records.commit()
    assert path.stat().st_size < SIZE // 50  # streamed through the codec, never inflated
    with RecordFile(path) as records:
        assert len(records) == 3 and records[0] == b"before" and records[2] == b"after"
        seen = hashlib.blake2b(digest_size=16)
        total = 0
        for piece in records.record_chunks(number):
            total += len(piece)
            seen.update(piece)
        assert total == SIZE
        assert seen.digest() == expected.digest()
        assert records.verify().ok

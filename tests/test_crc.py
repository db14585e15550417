"""The CRC-32 klepto checks everything with: the values of zlib.crc32, whichever
implementation is in use (``isal`` when installed, the ``fast`` extra)."""

from __future__ import annotations

import zlib

from hypothesis import given
from hypothesis import strategies as st

from klepto import _crc


@given(st.binary(max_size=5000), st.integers(0, 2**32 - 1), st.integers(0, 64))
def test_values_are_those_of_zlib(data, start, cut):
    assert _crc.crc32(data) == zlib.crc32(data)
    assert _crc.crc32(data, start) == zlib.crc32(data, start)
    view = memoryview(bytearray(data))[cut:]  # buffers and slices, as records are read
    assert _crc.crc32(view, start) == zlib.crc32(view, start)


def test_chained_over_parts_equals_one_pass():
    data = bytes(range(256)) * 4000  # a megabyte: past any small-buffer path
    running = 0
    for part in range(0, len(data), 65536):
        running = _crc.crc32(data[part : part + 65536], running)
    assert running == _crc.crc32(data) == zlib.crc32(data)


def test_the_fast_extra_is_used_when_installed():
    try:
        import isal  # noqa: F401
    except ImportError:
        assert _crc.IMPLEMENTATION == "zlib"
    else:
        assert _crc.IMPLEMENTATION == "isal"

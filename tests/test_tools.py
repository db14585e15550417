"""klepto.tools: CacheInfo, isiterable, IS_PYPY, _b (spec section 1)."""

import platform

from hypothesis import given, settings
from hypothesis import strategies as st

from klepto import tools
from klepto.tools import IS_PYPY, CacheInfo, _b, isiterable


def test_all_lists_isiterable_only():
    assert tools.__all__ == ["isiterable"]


def test_cacheinfo_fields_in_order():
    assert CacheInfo._fields == ("hit", "miss", "load", "maxsize", "size")
    info = CacheInfo(1, 2, 3, 100, 4)
    assert (info.hit, info.miss, info.load, info.maxsize, info.size) == (1, 2, 3, 100, 4)
    assert tuple(info) == (1, 2, 3, 100, 4)


def test_isiterable():
    for value in ("abc", "", b"x", [], (), {}, set(), range(3), iter([1])):
        assert isiterable(value) is True
    for value in (1, 1.5, None, object(), min, True):
        assert isiterable(value) is False


def test_is_pypy_matches_interpreter():
    assert IS_PYPY is (platform.python_implementation() == "PyPy")


def test_b_latin1_encodes():
    assert _b("abc") == b"abc"
    assert _b("") == b""
    assert _b("\xe9") == b"\xe9"


@settings(deadline=None, derandomize=True)
@given(st.text(alphabet=st.characters(max_codepoint=255)))
def test_b_round_trips_latin1_text(text):
    assert _b(text).decode("latin-1") == text

"""The safe serializer's tagged JSON: round trips of everything it accepts, nothing executed."""

from __future__ import annotations

import datetime
import decimal
import json
import math
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from klepto import _safeformat
from klepto._safeformat import dumps, loads, register_safe_type


def same(a, b) -> bool:
    """Equality that also requires equal types and treats NaN as equal to NaN."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (
            a == b and math.copysign(1, a) == math.copysign(1, b)
        )
    if isinstance(a, complex):
        return same(a.real, b.real) and same(a.imag, b.imag)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return len(a) == len(b) and all(k in b and same(v, b[k]) for k, v in a.items())
    if isinstance(a, datetime.datetime) and a.tzinfo is not None:
        a, b = _wall_and_offset(a), _wall_and_offset(b)
    return a == b


def _wall_and_offset(moment: datetime.datetime) -> tuple:
    """An aware datetime comes back with its offset, not its zone (``_safeformat``'s
    docstring); ``==`` across zones is False in a DST gap or fold (PEP 495), so compare
    what is kept: the wall time and the UTC offset."""
    return moment.replace(tzinfo=None), moment.utcoffset()


hashables = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.text()
    | st.binary()
    | st.floats(allow_nan=False)
    | st.decimals(allow_nan=False)
    | st.uuids()
    | st.dates()
    | st.datetimes()
    | st.times()
    | st.timedeltas(),
    lambda inner: st.tuples(inner, inner) | st.frozensets(inner, max_size=4),
    max_leaves=8,
)

values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text()
    | st.binary()
    | st.complex_numbers()
    | st.datetimes(timezones=st.none() | st.timezones())
    | st.dates()
    | st.times()
    | st.timedeltas()
    | st.decimals(allow_nan=False)
    | st.uuids()
    | hashables,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(), inner, max_size=4)
        | st.dictionaries(hashables, inner, max_size=4)
        | st.sets(hashables, max_size=4)
        | st.frozensets(hashables, max_size=4)
        | st.builds(bytearray, st.binary(max_size=20))
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(values)
def test_round_trip(value):
    data = dumps(value)
    assert isinstance(data, bytes)
    json.loads(data)  # always valid JSON, never NaN literals
    assert same(loads(data), value)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.text().map(lambda t: "$" + t), st.integers(), max_size=4))
def test_keys_that_look_like_tags_are_escaped(value):
    assert loads(dumps(value)) == value


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), max_size=5))
def test_lone_surrogates(text):
    assert loads(dumps(text)) == text


def test_documented_tags():
    assert json.loads(dumps((1, 2))) == {"$t": [1, 2]}
    assert json.loads(dumps(b"\x00")) == {"$b": "AA=="}
    assert json.loads(dumps(float("-inf"))) == {"$f": "-inf"}
    assert json.loads(dumps({1: 2})) == {"$d": [[1, 2]]}
    assert json.loads(dumps({"a": 1})) == {"a": 1}
    assert json.loads(dumps(decimal.Decimal("1.10"))) == {"$dec": "1.10"}
    assert json.loads(dumps(datetime.timedelta(1, 2, 3))) == {"$td": [1, 2, 3]}
    identifier = uuid.UUID(int=5)
    assert json.loads(dumps(identifier)) == {"$uuid": identifier.hex}


def test_unknown_types_and_tags_are_refused():
    class Opaque:
        pass

    with pytest.raises(TypeError, match="register_safe_type"):
        dumps(Opaque())
    with pytest.raises(ValueError, match="unknown safe-format tag"):
        loads(b'{"$eval": "__import__(\'os\')"}')
    with pytest.raises(ValueError):
        loads(b'{"$f": "1e400"}')


def test_registered_types():
    class Money:
        def __init__(self, cents):
            self.cents = cents

    register_safe_type(Money, "$money_test", lambda m: m.cents, Money)
    back = loads(dumps([Money(5), {"k": Money(7)}]))
    assert back[0].cents == 5 and back[1]["k"].cents == 7
    for bad_tag in ("money", "$t"):
        with pytest.raises(ValueError):
            register_safe_type(Money, bad_tag, int, Money)


def test_nothing_is_executed():
    assert _safeformat.loads(b"{\"a\": \"__import__('os').system('false')\"}") == {
        "a": "__import__('os').system('false')"
    }


def test_an_aware_datetime_in_a_dst_gap_keeps_its_wall_time_and_offset():
    zoneinfo = pytest.importorskip("zoneinfo")
    try:
        zone = zoneinfo.ZoneInfo("Pacific/Auckland")
    except zoneinfo.ZoneInfoNotFoundError:
        pytest.skip("no time zone database on this machine")
    gap = datetime.datetime(2008, 9, 28, 2, 30, tzinfo=zone)  # clocks went 2:00 -> 3:00
    back = loads(dumps(gap))
    assert back.replace(tzinfo=None) == gap.replace(tzinfo=None)
    assert back.utcoffset() == gap.utcoffset()
    assert type(back.tzinfo) is datetime.timezone

"""Serializer and codec registries: round trips, options, settings, registration, errors."""

from __future__ import annotations

import datetime
import math
import pickle
import sys

import pytest

from klepto import serializers
from klepto.errors import MissingDependencyError
from klepto.serializers import (
    Codec,
    Serializer,
    get_codec,
    get_serializer,
    register_codec,
    register_safe_type,
    register_serializer,
)

PLAIN = {"a": [1, 2.5, None, True], "b": {"nested": "ünïcode"}, "c": ""}


def _closure():
    base = 40
    return lambda x: x + base + 2


@pytest.mark.parametrize("name", ["pickle", "dill", "json", "safe"])
def test_plain_data_round_trips(name):
    serializer = get_serializer(name)
    assert isinstance(serializer, Serializer) and serializer.name == name
    data = serializer.dumps(PLAIN)
    assert isinstance(data, bytes)
    assert serializer.loads(data) == PLAIN
    assert serializer.settings()["serializer"] == name


def test_default_is_dill_and_it_pickles_closures():
    serializer = get_serializer()
    assert serializer.name == "dill" and serializer.executes_code
    assert serializer.loads(serializer.dumps(_closure()))(0) == 42


def test_pickle_protocol_option_is_recorded():
    serializer = get_serializer("pickle", protocol=2)
    assert serializer.settings() == {"serializer": "pickle", "protocol": 2}
    assert serializer.dumps((1,))[:2] == b"\x80\x02"
    assert get_serializer("pickle").protocol == pickle.HIGHEST_PROTOCOL


def test_code_execution_flags():
    assert get_serializer("pickle").executes_code and get_serializer("dill").executes_code
    assert not get_serializer("json").executes_code and not get_serializer("safe").executes_code


def test_safe_keeps_types_json_cannot():
    value = {
        "t": (1, (2, 3)),
        "b": b"\x00\xff",
        "s": {1, 2},
        "nan": math.nan,
        "when": datetime.datetime(2024, 5, 6, 7, 8, 9),
        5: "int key",
    }
    back = get_serializer("safe").loads(get_serializer("safe").dumps(value))
    assert math.isnan(back.pop("nan")) and math.isnan(value.pop("nan"))
    assert back == value and type(back["t"]) is tuple and type(back["b"]) is bytes
    assert get_serializer("json").loads(get_serializer("json").dumps([(1, 2)])) == [[1, 2]]


def test_json_and_safe_carry_lone_surrogates():
    odd = "file-\udcff-name"  # what os.fsdecode makes of an undecodable byte
    for name in ("json", "safe"):
        serializer = get_serializer(name)
        assert serializer.loads(serializer.dumps([odd])) == [odd]


def test_register_safe_type_is_exported_here():
    class Point:
        def __init__(self, x, y):
            self.x, self.y = x, y

        def __eq__(self, other):
            return (self.x, self.y) == (other.x, other.y)

        __hash__ = None

    register_safe_type(Point, "$point_ser", lambda p: [p.x, p.y], lambda v: Point(*v))
    safe = get_serializer("safe")
    assert safe.loads(safe.dumps({"p": Point(1, 2)})) == {"p": Point(1, 2)}
    assert "register_safe_type" in serializers.__all__


@pytest.mark.parametrize("name", ["zlib", "lzma", "bz2", "zstd"])
def test_codecs_round_trip(name):
    codec = get_codec(name)
    assert isinstance(codec, Codec) and codec.name == name
    data = b"abc" * 10_000 + bytes(range(256))
    packed = codec.compress(data)
    assert len(packed) < len(data) and codec.decompress(packed) == data
    assert codec.decompress(codec.compress(b"")) == b""


def test_codec_options_and_none():
    assert get_codec(None) is None and get_codec("none") is None
    fast, small = get_codec("zlib", level=1), get_codec("zlib", level=9)
    data = bytes(range(256)) * 400
    assert fast.decompress(fast.compress(data)) == data
    assert len(small.compress(data)) <= len(fast.compress(data))


def test_instances_pass_through():
    serializer, codec = get_serializer("json"), get_codec("zlib")
    assert get_serializer(serializer) is serializer and get_codec(codec) is codec
    with pytest.raises(TypeError):
        get_serializer(42)
    with pytest.raises(TypeError):
        get_codec(42)


def test_unknown_names_list_the_known_ones():
    with pytest.raises(ValueError, match=r"known: .*dill.*json"):
        get_serializer("yaml")
    with pytest.raises(ValueError, match="known: bz2, lzma"):
        get_codec("brotli")


def test_registration():
    class Upper:
        name = "upper"
        executes_code = False

        def dumps(self, obj):
            return str(obj).upper().encode()

        def loads(self, data):
            return data.decode()

        def settings(self):
            return {"serializer": self.name}

    class Reverse:
        name = "reverse"

        def compress(self, data):
            return data[::-1]

        def decompress(self, data):
            return data[::-1]

    register_serializer("upper-test", Upper)
    register_codec("reverse-test", Reverse)
    assert get_serializer("upper-test").dumps("ab") == b"AB"
    assert get_codec("reverse-test").compress(b"ab") == b"ba"
    assert "upper-test" in serializers.serializers() and "reverse-test" in serializers.codecs()
    with pytest.raises(ValueError, match="already registered"):
        register_serializer("upper-test", Upper)
    register_serializer("upper-test", Upper, replace=True)
    with pytest.raises(TypeError):
        register_codec("", Reverse)


def test_missing_optional_dependency_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "zstandard", None)  # makes the import fail
    with pytest.raises(MissingDependencyError, match=r"klepto\[zstd\]") as caught:
        get_codec("zstd")
    assert isinstance(caught.value, ImportError) and caught.value.extra == "zstd"

"""How objects become bytes: serializer and codec registries.

A *serializer* turns an object into bytes and back (``pickle``, ``dill`` (the default),
``json``, and ``safe``, which never executes code). A *codec* compresses bytes (``zlib``,
``lzma``, ``bz2`` from the standard library, ``zstd`` with the ``zstd`` extra). Backends only
move bytes; they never pickle by themselves. Both registries are keyed by name, so a store
can record ``{"serializer": "dill", "codec": "zlib"}`` in its settings and reopen with them.
"""

from __future__ import annotations

import bz2
import contextlib
import json
import lzma
import pickle
import zlib
from collections.abc import Callable, Iterator
from typing import Any, Protocol, runtime_checkable

from klepto._safeformat import json_bytes, register_safe_type
from klepto.errors import UndecodableError, require

__all__ = [
    "Codec",
    "Serializer",
    "codecs",
    "get_codec",
    "get_serializer",
    "register_codec",
    "register_safe_type",
    "register_serializer",
    "serializers",
]


@runtime_checkable
class Serializer(Protocol):
    """Turns objects into bytes and back. ``executes_code`` is True for pickle-like formats."""

    name: str
    executes_code: bool

    def dumps(self, obj: Any) -> bytes: ...

    def loads(self, data: bytes) -> Any: ...

    def settings(self) -> dict[str, Any]: ...


@runtime_checkable
class Codec(Protocol):
    """Compresses bytes; ``decompress(compress(b)) == b``."""

    name: str

    def compress(self, data: bytes) -> bytes: ...

    def decompress(self, data: bytes) -> bytes: ...


class PickleSerializer:
    """The standard library pickle, at a chosen protocol (default: highest)."""

    name = "pickle"
    executes_code = True

    def __init__(self, protocol: int | None = None) -> None:
        self.protocol = pickle.HIGHEST_PROTOCOL if protocol is None else protocol

    def dumps(self, obj: Any) -> bytes:
        return pickle.dumps(obj, protocol=self.protocol)

    def loads(self, data: bytes) -> Any:
        return pickle.loads(data)

    def settings(self) -> dict[str, Any]:
        return {"serializer": self.name, "protocol": self.protocol}


class DillSerializer(PickleSerializer):
    """dill: pickles functions, lambdas, closures and classes defined in ``__main__``."""

    name = "dill"

    def __init__(self, protocol: int | None = None) -> None:
        import dill

        self._dill = dill
        self.protocol = dill.DEFAULT_PROTOCOL if protocol is None else protocol

    def dumps(self, obj: Any) -> bytes:
        return self._dill.dumps(obj, protocol=self.protocol)  # type: ignore[no-any-return]

    def loads(self, data: bytes) -> Any:
        return self._dill.loads(data)


class JsonSerializer:
    """Plain JSON (UTF-8): str keys only, tuples come back as lists. Never executes code."""

    name = "json"
    executes_code = False

    def dumps(self, obj: Any) -> bytes:
        return json_bytes(obj)

    def loads(self, data: bytes) -> Any:
        with _not_data(self.name):
            return json.loads(data)

    def settings(self) -> dict[str, Any]:
        return {"serializer": self.name}


class SafeSerializer(JsonSerializer):
    """Tagged JSON for plain data (tuples, bytes, sets, datetimes, NaN/inf, ...); no code runs.

    Aware datetimes keep their wall time and UTC offset, not their time zone object."""

    name = "safe"

    def dumps(self, obj: Any) -> bytes:
        from klepto import _safeformat

        return _safeformat.dumps(obj)

    def loads(self, data: bytes) -> Any:
        from klepto import _safeformat

        with _not_data(self.name):
            return _safeformat.loads(data)


@contextlib.contextmanager
def _not_data(name: str) -> Iterator[None]:
    """Bytes a code-free serializer cannot parse (a planted pickle, or bytes written by
    another serializer) raise UndecodableError, a klepto CorruptionError (and ValueError),
    not a bare UnicodeDecodeError or JSONDecodeError from deep inside the parser."""
    try:
        yield
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise UndecodableError(
            f"not {name} data (damaged, or written by another serializer such as pickle): {exc}"
        ) from exc


class _StdlibCodec:
    def __init__(
        self, name: str, compress: Callable[..., bytes], decompress: Callable[..., Any]
    ) -> None:
        self.name = name
        self._compress = compress
        self.decompress = decompress

    def compress(self, data: bytes) -> bytes:
        return self._compress(data)


class ZstdCodec:
    """Zstandard through the ``zstandard`` package (``pip install 'klepto[zstd]'``)."""

    name = "zstd"

    def __init__(self, level: int = 3) -> None:
        zstandard = require("zstandard", "zstd", "the zstd codec")
        self._compressor = zstandard.ZstdCompressor(level=level)
        self._decompressor = zstandard.ZstdDecompressor()

    def compress(self, data: bytes) -> bytes:
        return self._compressor.compress(data)  # type: ignore[no-any-return]

    def decompress(self, data: bytes) -> bytes:
        return self._decompressor.decompress(data)  # type: ignore[no-any-return]


_SERIALIZERS: dict[str, Callable[..., Serializer]] = {
    "pickle": PickleSerializer,
    "dill": DillSerializer,
    "json": JsonSerializer,
    "safe": SafeSerializer,
}

_CODECS: dict[str, Callable[..., Codec]] = {
    "zlib": lambda level=6: _StdlibCodec(
        "zlib", lambda b: zlib.compress(b, level), zlib.decompress
    ),
    "lzma": lambda level=6: _StdlibCodec(
        "lzma", lambda b: lzma.compress(b, preset=level), lzma.decompress
    ),
    "bz2": lambda level=9: _StdlibCodec("bz2", lambda b: bz2.compress(b, level), bz2.decompress),
    "zstd": ZstdCodec,
}


def register_serializer(
    name: str, factory: Callable[..., Serializer], *, replace: bool = False
) -> None:
    """Register ``factory(**options) -> Serializer`` under ``name``."""
    _register(_SERIALIZERS, "serializer", name, factory, replace)


def register_codec(name: str, factory: Callable[..., Codec], *, replace: bool = False) -> None:
    """Register ``factory(**options) -> Codec`` under ``name``."""
    _register(_CODECS, "codec", name, factory, replace)


def _register(
    registry: dict[Any, Any], kind: str, name: str, factory: Callable[..., Any], replace: bool
) -> None:
    if not isinstance(name, str) or not name:
        raise TypeError(f"a {kind} name must be a non-empty str, not {name!r}")
    if name in registry and not replace:
        raise ValueError(f"a {kind} named {name!r} is already registered (pass replace=True)")
    registry[name] = factory


def get_serializer(spec: str | Serializer | None = None, **options: Any) -> Serializer:
    """The serializer named ``spec`` (default ``'dill'``) built with ``options``, or ``spec``."""
    if spec is None:
        spec = "dill"
    if not isinstance(spec, str):
        if isinstance(spec, Serializer):
            return spec
        raise TypeError(f"not a serializer: {spec!r}")
    return _lookup(_SERIALIZERS, "serializer", spec)(**options)  # type: ignore[no-any-return]


def get_codec(spec: str | Codec | None, **options: Any) -> Codec | None:
    """The codec named ``spec`` built with ``options``; ``None``/``'none'`` means no codec."""
    if spec is None or spec == "none":
        return None
    if not isinstance(spec, str):
        if isinstance(spec, Codec):
            return spec
        raise TypeError(f"not a codec: {spec!r}")
    return _lookup(_CODECS, "codec", spec)(**options)  # type: ignore[no-any-return]


def _lookup(registry: dict[Any, Any], kind: str, name: str) -> Callable[..., Any]:
    try:
        return registry[name]  # type: ignore[no-any-return]
    except KeyError:
        known = ", ".join(sorted(registry))
        raise ValueError(f"unknown {kind} {name!r} (known: {known})") from None


def serializers() -> tuple[str, ...]:
    """Names of the registered serializers."""
    return tuple(_SERIALIZERS)


def codecs() -> tuple[str, ...]:
    """Names of the registered codecs."""
    return tuple(_CODECS)

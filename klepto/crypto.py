"""Hashing, stringifying and pickling helpers behind the keymaps.

Each public function takes the object first and a "kind" second (an algorithm, an encoding, a
serializer); ``None`` always selects the plain builtin (``hash``, ``str``, ``repr``). Each
function also carries, as an attribute, the function listing its valid kinds
(``hash.algorithms is algorithms``).
"""

from __future__ import annotations

import builtins
import encodings as _encodings_package
import functools
import hashlib
import importlib
import importlib.util
import pkgutil
from collections.abc import Callable
from encodings import aliases as _aliases
from types import ModuleType
from typing import Any

__all__ = ["algorithms", "encodings", "hash", "pickle", "serializers", "string"]

# Encoding names that are really Python callables; upstream ``eval``-ed the name, we look it up.
_CALLABLE_ENCODINGS: dict[str, Callable[..., Any]] = {"str": str, "repr": repr}
_LENIENT_CALLABLE_ENCODINGS: dict[str, Callable[..., Any]] = {**_CALLABLE_ENCODINGS, "bytes": bytes}

# Extendable-output hashes (shake_*) need an explicit digest length; 32 bytes matches sha256.
_VARIABLE_DIGEST_BYTES = 32


def algorithms() -> tuple[Any, ...]:
    """Return the valid ``algorithm`` values of ``hash``: ``None`` then the hashlib names."""
    return (None, *sorted(hashlib.algorithms_available))


def hash(object: Any, algorithm: str | None = None) -> int | str:
    """Hash ``object``: builtin ``hash()`` if ``algorithm`` is None, else a hex digest.

    With an algorithm the digest is taken over ``repr(object)`` encoded as UTF-8, so it is the
    same in every process (unlike the builtin hash of anything containing a str).
    """
    if algorithm is None:
        return builtins.hash(object)
    digest = hashlib.new(algorithm, repr(object).encode())
    if digest.digest_size == 0:  # shake_128 / shake_256
        return digest.hexdigest(_VARIABLE_DIGEST_BYTES)  # type: ignore[call-arg]
    return digest.hexdigest()


@functools.cache
def _codec_names() -> tuple[str, ...]:
    modules = {info.name for info in pkgutil.iter_modules(_encodings_package.__path__)}
    modules.discard("aliases")  # the alias table, not a codec
    names = modules | set(_aliases.aliases.values())
    names = {name for name in names if name != "tactis" and not name.endswith("_codec")}
    return tuple(sorted(names))


def encodings() -> tuple[Any, ...]:
    """Return the valid ``encoding`` values of ``string``.

    ``None``, then the stdlib codec names, then ``'str'`` and ``'repr'`` (always last).
    """
    return (None, *_codec_names(), "str", "repr")


def _errors_mode(strict: bool | None) -> str:
    if strict:
        return "strict"
    return "ignore" if strict is None else "replace"


def string(object: Any, encoding: str | None = None, strict: bool | None = True) -> str | bytes:
    """Convert ``object`` to a str, or to bytes of its repr in a codec.

    ``None`` -> ``str(object)``; ``'str'``/``'repr'`` (and, when not strict, ``'bytes'``) call
    that builtin; anything else -> ``repr(object).encode(encoding, errors)`` where errors is
    ``'strict'``, ``'ignore'`` (``strict=None``) or ``'replace'`` (``strict=False``), so an
    unknown name raises ``LookupError``. No other name is ever evaluated.
    """
    if encoding is None:
        return str(object)
    allowed = _CALLABLE_ENCODINGS if strict else _LENIENT_CALLABLE_ENCODINGS
    convert = allowed.get(encoding) if isinstance(encoding, str) else None
    if convert is not None:
        try:
            return convert(object)  # type: ignore[no-any-return]
        except TypeError:
            try:  # e.g. bytes('x') needs an encoding
                return convert(object, "utf_8")  # type: ignore[no-any-return]
            except TypeError:
                pass  # classic behaviour: fall back to encoding the repr
    return repr(object).encode(encoding, _errors_mode(strict))


@functools.cache
def _optional_serializers() -> tuple[str, ...]:
    names = ("cloudpickle", "jsonpickle")
    return tuple(name for name in names if importlib.util.find_spec(name) is not None)


def serializers() -> tuple[Any, ...]:
    """Return the valid ``serializer`` values of ``pickle`` (optional ones only if installed)."""
    return (None, "pickle", "json", "dill", *_optional_serializers())


def _serializer_module(serializer: Any) -> ModuleType:
    if isinstance(serializer, ModuleType):
        return serializer
    if isinstance(serializer, str):
        try:
            return importlib.import_module(serializer)
        except ImportError as exc:
            raise NameError(f"name '{serializer}' is not defined") from exc
    raise TypeError(f"'{serializer!r}' is not a module")


def pickle(object: Any, serializer: Any = None, **kwds: Any) -> str | bytes:
    """Serialize ``object`` with a module's ``dumps`` (``None`` -> ``repr(object)``).

    ``serializer`` is a module or a module name. If ``dumps`` rejects the extra keywords with a
    ``TypeError`` (stdlib pickle and json know no ``byref``), it is called again without any.
    """
    if serializer is None:
        return repr(object)
    module = _serializer_module(serializer)
    if not kwds:
        return module.dumps(object)  # type: ignore[no-any-return]
    try:
        return module.dumps(object, **kwds)  # type: ignore[no-any-return]
    except TypeError:
        return module.dumps(object)  # type: ignore[no-any-return]


hash.algorithms = algorithms  # type: ignore[attr-defined]
string.encodings = encodings  # type: ignore[attr-defined]
pickle.serializers = serializers  # type: ignore[attr-defined]

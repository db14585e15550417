"""Keymaps: turn a call's ``(*args, **kwds)`` into a dictionary key.

``keymap`` gives raw tuple keys, ``hashmap`` hashes them, ``stringmap`` converts them to text
and ``picklemap`` serializes them; ``a + b`` chains two keymaps.
"""

from __future__ import annotations

import ast
import importlib
from collections.abc import Callable
from typing import Any

from klepto.crypto import serializers
from klepto.keymaps._base import NOSENTINEL, SENTINEL, keymap
from klepto.keymaps.hashmap import hashmap
from klepto.keymaps.picklemap import picklemap
from klepto.keymaps.stablemap import stablemap as stablemap
from klepto.keymaps.stringmap import stringmap

# ``stablemap`` (the decorators' default) is public too; ``__all__`` keeps the classic six.
__all__ = ["NOSENTINEL", "SENTINEL", "hashmap", "keymap", "picklemap", "stringmap"]


def _identity(key: Any) -> Any:
    return key


def _stub_decoder(keymap: Any = None) -> Callable[[Any], Any]:
    """Return a best-effort inverse of a keymap's transform (private; used by a test).

    ``keymap`` is a keymap or a serializer/encoding name. Serializer modules give their
    ``loads``; text produced by ``repr``/``str`` is read back as a Python literal (with
    ``ast.literal_eval``, never ``eval``); a raw keymap or None gives the identity.
    """
    if isinstance(keymap, str):
        if keymap in serializers():
            return importlib.import_module(keymap).loads  # type: ignore[no-any-return]
        return ast.literal_eval
    stub = getattr(keymap, "__stub__", None)
    if stub in ("encoding", "algorithm"):
        return ast.literal_eval
    if stub == "serializer":
        if keymap.__type__ is None:
            return ast.literal_eval
        return importlib.import_module(keymap.__type__).loads  # type: ignore[no-any-return]
    return _identity

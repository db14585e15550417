"""How the HDF archives store one entry, and the settings they record.

An entry is found by ``stable_hash(key)`` (32 hex digits; never a name made from the key).
With ``meta=False`` it is an HDF5 dataset of that name; with ``meta=True`` a pair of
attributes of the file's root group (``v<digest>``, ``k<digest>``). The key is sealed as in
the SQL archives (plain keys in the code-free ``safe`` format). The value is

* ``serialized=True``: the archive's :class:`~klepto.integrity.Packer` bytes (dill by
  default; checksummed, optionally signed) as an opaque ``numpy.void``;
* ``serialized=False``: the value itself as a native HDF5 array (numbers, bools, str and
  bytes, and numpy arrays of them), readable by any HDF5 tool, with a CRC-32 of its bytes
  in the attribute ``crc32`` (``c<digest>`` for ``meta=True``), checked on every read.

Settings (kind, format, serialized, serializer, protocol, codec, signed, meta) are a JSON
document in the root attribute ``klepto``.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

from klepto._canonical import stable_hash
from klepto.archives._sqlcodec import RowCodec
from klepto.errors import CorruptArchiveError
from klepto.integrity import Packer, resolve_key

__all__ = ["FORMAT", "SETTINGS_ATTR", "HdfCodec", "resolve_settings"]

FORMAT = 1
SETTINGS_ATTR = "klepto"
_ENFORCED = ("serialized", "serializer", "protocol", "codec", "meta")


def resolve_settings(
    kind: str, stored: dict[str, Any] | None, asked: dict[str, Any], key: Any
) -> dict[str, Any]:
    """The settings of an archive: ``stored`` ones checked against ``asked``, or new ones."""
    if stored is None:
        serialized = asked.get("serialized", True)
        serializer = asked.get("serializer") or ("dill" if serialized else "native")
        packer = Packer(serializer if serialized else "safe", asked.get("codec"), key=key)
        return {
            "kind": kind,
            "format": FORMAT,
            "serialized": serialized,
            "serializer": serializer,
            "protocol": asked.get("protocol") if serializer in ("dill", "pickle") else None,
            "codec": asked.get("codec"),
            "signed": bool(packer.key),
            "meta": asked.get("meta", False),
        }
    if stored.get("kind") != kind or stored.get("format") != FORMAT:
        raise ValueError(
            f"not a {kind}_archive of format {FORMAT} (it records kind={stored.get('kind')!r}, "
            f"format={stored.get('format')!r})"
        )
    for name in _ENFORCED:
        if name in asked and asked[name] != stored.get(name):
            raise ValueError(
                f"this {kind}_archive was created with {name}={stored.get(name)!r}; "
                f"it cannot be opened with {name}={asked[name]!r}"
            )
    return dict(stored)


def _void(data: bytes) -> Any:
    import numpy as np

    return np.void(data)


def _bytes(stored: Any) -> bytes:
    return stored.tobytes() if hasattr(stored, "tobytes") else bytes(stored)


class HdfCodec:
    """Writes and reads entries of one archive in an open h5py file or group."""

    def __init__(self, settings: dict[str, Any], key: Any, safe: bool, where: str) -> None:
        self.settings = settings
        self.meta = bool(settings["meta"])
        self.serialized = bool(settings["serialized"])
        signing = resolve_key(key)
        if settings["signed"] and not signing:
            raise ValueError("this archive is signed: pass key=... or set $KLEPTO_HMAC_KEY")
        if signing and not settings["signed"]:
            raise ValueError("this archive is not signed: open it without an HMAC key")
        name = settings["serializer"] if self.serialized else "safe"
        protocol = settings.get("protocol")
        self.packer = Packer(name, settings["codec"], key=signing, safe=safe, protocol=protocol)
        self.keys = RowCodec(self.packer, where)
        self.where = where

    # --- names --------------------------------------------------------------------------
    def digest(self, key: Any) -> str:
        return stable_hash(key)

    def digests(self, group: Any) -> list[str]:
        if self.meta:
            return [name[1:] for name in group.attrs if name[:1] == "k" and len(name) == 33]
        return [name for name in group if len(name) == 32]

    def has(self, group: Any, digest: str) -> bool:
        return ("k" + digest) in group.attrs if self.meta else digest in group

    # --- writing ------------------------------------------------------------------------
    def write(self, group: Any, key: Any, value: Any) -> None:
        digest = self.digest(key)
        sealed_key = _void(self.keys.pack_key(key))
        if self.meta:
            self._write_meta(group, digest, sealed_key, value)
            return
        if digest in group:
            del group[digest]
        if self.serialized:
            dataset = group.create_dataset(digest, data=_void(self.keys.pack_value(value, digest)))
        else:
            native = _native(value)
            dataset = group.create_dataset(digest, data=native)
            dataset.attrs["crc32"] = _crc(native)
        dataset.attrs["key"] = sealed_key

    def _write_meta(self, group: Any, digest: str, sealed_key: Any, value: Any) -> None:
        attrs = group.attrs
        if self.serialized:
            attrs["v" + digest] = _void(self.keys.pack_value(value, digest))
        else:
            native = _native(value)
            attrs["v" + digest] = native
            attrs["c" + digest] = _crc(native)
        attrs["k" + digest] = sealed_key

    def delete(self, group: Any, digest: str) -> None:
        if self.meta:
            for prefix in ("v", "k", "c"):
                if prefix + digest in group.attrs:
                    del group.attrs[prefix + digest]
        else:
            del group[digest]

    # --- reading ------------------------------------------------------------------------
    def read_key(self, group: Any, digest: str) -> Any:
        stored = group.attrs["k" + digest] if self.meta else group[digest].attrs["key"]
        return self.keys.unpack_key(_bytes(stored), digest)

    def read_value(self, group: Any, digest: str, key: Any) -> Any:
        if self.meta:
            stored, crc = group.attrs["v" + digest], group.attrs.get("c" + digest)
        else:
            dataset = group[digest]
            stored, crc = dataset[()], dataset.attrs.get("crc32")
        if self.serialized:
            return self.keys.unpack_value(_bytes(stored), key)
        if crc is None or _crc(stored) != int(crc):
            raise CorruptArchiveError("value checksum mismatch", path=self.where, key=key)
        return _python(stored)


def _native(value: Any) -> Any:
    """``value`` as a numpy array HDF5 stores natively (no pickled objects)."""
    import numpy as np

    native = np.asarray(value)
    if native.dtype.kind == "U":
        native = np.char.encode(native, "utf-8")  # HDF5 stores bytes; str comes back via attr
    if native.dtype.kind == "O":
        raise TypeError(
            f"serialized=False stores numbers, strings and arrays of them natively; "
            f"a {type(value).__qualname__} needs serialized=True"
        )
    return native


def _crc(native: Any) -> int:
    import numpy as np

    return zlib.crc32(np.ascontiguousarray(native).tobytes())


def _python(stored: Any) -> Any:
    """A 0-d value as a Python scalar (``bytes`` decoded to ``str``); arrays stay arrays."""
    import numpy as np

    array = np.asarray(stored)
    if array.ndim:
        return array
    item = array.item()
    return item.decode("utf-8") if isinstance(item, bytes) else item


def encode_settings(settings: dict[str, Any]) -> str:
    return json.dumps(settings, sort_keys=True)


def decode_settings(text: Any, where: str) -> dict[str, Any]:
    try:
        settings = json.loads(text if isinstance(text, str) else bytes(text).decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise CorruptArchiveError(f"unreadable settings ({exc})", path=where) from exc
    if not isinstance(settings, dict):
        raise CorruptArchiveError("settings are not a JSON object", path=where)
    return settings

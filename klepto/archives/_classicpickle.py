"""Reading the pickles that classic klepto 0.2.x wrote (for ``klepto migrate`` only).

Classic archives hold ``dill`` pickles, and ``dir_archive(fast=True | compression |
memmode)`` wrote them with its own fast pickler (spec 7.12): numpy arrays moved to side
files ``<file>_NN.npy`` (``.npy.z`` when compressed) that the pickle refers to through
``klepto._pickle.NDArrayWrapper`` / ``ZNDArrayWrapper`` objects, and, when compressed, the
pickle itself in the ``ZF`` format: ``b"ZF"``, the length of the uncompressed data as
``hex()`` text left-justified to 19 bytes, then a zlib stream.

Unpickling runs code chosen by whoever wrote the file: callers must have the user's
explicit trust before calling anything here. Side files are read with
``numpy.load(allow_pickle=False)`` and only from the pickle's own directory.
"""

from __future__ import annotations

import io
import os
import pickle
import zlib
from typing import Any

from klepto.errors import CorruptArchiveError

__all__ = ["load_classic_pickle", "loads_classic_pickle", "read_zf"]

ZF_MAGIC = b"ZF"
_ZF_LENGTH = 19  # len(hex(2**64)): the width classic padded the length to


def read_zf(data: bytes, where: str) -> bytes:
    """The bytes of a ``ZF`` blob (the classic compressed format), length checked."""
    header = data[len(ZF_MAGIC) : len(ZF_MAGIC) + _ZF_LENGTH]
    try:
        length = int(header.decode("ascii").strip(), 16)
        payload = zlib.decompress(data[len(ZF_MAGIC) + _ZF_LENGTH :])
    except (ValueError, UnicodeDecodeError, zlib.error) as exc:
        raise CorruptArchiveError(f"unreadable ZF data ({exc})", path=where) from exc
    if len(payload) != length:
        raise CorruptArchiveError(
            f"ZF data holds {len(payload)} bytes, its header says {length}", path=where
        )
    return payload


class _ArrayReference:
    """Stands for classic ``NDArrayWrapper``: an array kept in an ``.npy`` side file."""

    def read(self, directory: str, where: str) -> Any:
        import numpy as np

        path = _side_file(directory, self.__dict__.get("filename"), where)
        array = np.load(path, allow_pickle=False)
        subclass = self.__dict__.get("subclass")
        if isinstance(subclass, type) and issubclass(subclass, np.ndarray):
            array = array.view(subclass)
        return array


class _CompressedArrayReference(_ArrayReference):
    """Stands for classic ``ZNDArrayWrapper``: raw array bytes in a ``ZF`` side file."""

    def read(self, directory: str, where: str) -> Any:
        import numpy as np

        path = _side_file(directory, self.__dict__.get("filename"), where)
        with open(path, "rb") as handle:
            data = read_zf(handle.read(), path)
        subtype, *shape_and_dtype = self.__dict__["init_args"]
        if not (isinstance(subtype, type) and issubclass(subtype, np.ndarray)):
            subtype = np.ndarray
        array = np.ndarray.__new__(subtype, *shape_and_dtype)
        array.__setstate__((*self.__dict__["state"], data))
        return array


def _side_file(directory: str, filename: Any, where: str) -> str:
    if not isinstance(filename, str) or not filename:
        raise CorruptArchiveError("array reference without a file name", path=where)
    return os.path.join(directory, os.path.basename(filename))  # never outside the entry


_RENAMED = {
    ("klepto._pickle", "NDArrayWrapper"): _ArrayReference,
    ("klepto._pickle", "ZNDArrayWrapper"): _CompressedArrayReference,
    ("__builtin__", "NoneType"): type(None),
}


class _ClassicUnpickler(pickle._Unpickler):
    """The pure-Python unpickler, so that BUILD can swap array references for arrays."""

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, stream: Any, directory: str, where: str) -> None:
        super().__init__(stream)
        self._directory = directory
        self._where = where

    def find_class(self, module: str, name: str) -> Any:
        renamed = _RENAMED.get((module, name))
        if renamed is not None:
            return renamed
        if module == "dill.dill":  # dill's module before it became dill._dill
            module = "dill._dill"
        if module.startswith("dill"):
            import dill  # noqa: F401  (dill registers its reducers' helpers on import)
        return super().find_class(module, name)

    def _load_build(self) -> None:
        pickle._Unpickler.load_build(self)  # type: ignore[attr-defined]
        built = self.stack[-1]  # type: ignore[attr-defined]
        if isinstance(built, _ArrayReference):
            self.stack[-1] = built.read(self._directory, self._where)  # type: ignore[attr-defined]

    dispatch[pickle.BUILD[0]] = _load_build  # type: ignore[assignment]


def loads_classic_pickle(data: bytes, where: str, directory: str | None = None) -> Any:
    """Unpickle classic bytes (``ZF``-compressed or not); arrays come from ``directory``."""
    if data[: len(ZF_MAGIC)] == ZF_MAGIC:
        data = read_zf(data, where)
    folder = directory if directory is not None else os.path.dirname(where)
    try:
        return _ClassicUnpickler(io.BytesIO(data), folder, where).load()
    except (pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise CorruptArchiveError(f"unreadable classic pickle ({exc})", path=where) from exc


def load_classic_pickle(path: str) -> Any:
    """Unpickle a classic file; array side files are looked up beside it."""
    with open(path, "rb") as handle:
        data = handle.read()
    return loads_classic_pickle(data, path, os.path.dirname(os.path.abspath(path)))

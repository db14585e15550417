"""A minimal writer of classic klepto 0.2.x archives, written from the spec (7.6-7.9, 7.12).

Classic klepto is never installed or imported: these functions lay out files, directories
and tables the way the spec says classic klepto did, so that ``klepto migrate`` can be
tested against them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import sys
import types
import zlib
from collections.abc import Iterator
from typing import Any

import dill

ZF_WIDTH = 19  # len(hex(2**64))


def zf(data: bytes, level: int = 3) -> bytes:
    """The classic compressed format: b'ZF' + hex(len) left-justified to 19 + zlib data."""
    return b"ZF" + hex(len(data)).encode("ascii").ljust(ZF_WIDTH) + zlib.compress(data, level)


# --- file_archive ---------------------------------------------------------------------------
def write_file_archive(path: str, memo: dict, serialized: bool = True, protocol: Any = None):
    """``dill.dump(memo)``, ``json.dump(memo)`` (a str protocol), or ``memo = repr(memo)``."""
    if not serialized:
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(f"memo = {memo!r}\n")
    elif isinstance(protocol, str):
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(memo, handle)
    else:
        with open(path, "wb") as handle:
            dill.dump(memo, handle, protocol=protocol)


# --- dir_archive ----------------------------------------------------------------------------
def fname(key: Any) -> str:
    """Classic entry name: md5 of the repr for pickle-looking keys, else str(key); '-' -> '_'."""
    looks_pickled = isinstance(key, (bytes, str)) and (
        (key[:1] in (b"\x80", "\x80")) and key[-1:] in (b".", ".")
    )
    name = hashlib.md5(repr(key).encode()).hexdigest() if looks_pickled else str(key)
    return name.replace("-", "_")


@contextlib.contextmanager
def classic_pickle_module() -> Iterator[types.ModuleType]:
    """A stand-in ``klepto._pickle`` module, so pickles can name its wrapper classes."""
    module = types.ModuleType("klepto._pickle")

    class NDArrayWrapper:
        pass

    class ZNDArrayWrapper(NDArrayWrapper):
        pass

    for cls in (NDArrayWrapper, ZNDArrayWrapper):
        cls.__module__ = "klepto._pickle"
        cls.__qualname__ = cls.__name__
        setattr(module, cls.__name__, cls)
    saved = sys.modules.get("klepto._pickle")
    sys.modules["klepto._pickle"] = module
    try:
        yield module
    finally:
        if saved is None:
            del sys.modules["klepto._pickle"]
        else:
            sys.modules["klepto._pickle"] = saved


def fast_dump(value: Any, filename: str, compress: int = 0) -> list[str]:
    """The classic fast pickler: arrays in side files ``<filename>_NN.npy`` (or ``.npy.z``)."""
    import numpy as np

    written = [filename]
    with classic_pickle_module() as module:

        class Pickler(pickle.Pickler):
            def reducer_override(self, obj):
                if type(obj) is not np.ndarray:
                    return NotImplemented
                side = f"{filename}_{len(written):02d}.npy"
                if compress:
                    side += ".z"
                    _, init_args, state = obj.__reduce__()
                    with open(side, "wb") as handle:
                        handle.write(zf(state[-1], compress))
                    wrapper = module.ZNDArrayWrapper()
                    wrapper.__dict__.update(
                        filename=os.path.basename(side),
                        init_args=(np.ndarray, *init_args[1:]),
                        state=state[:-1],
                    )
                else:
                    np.save(side, obj, allow_pickle=False)
                    wrapper = module.NDArrayWrapper()
                    wrapper.__dict__.update(
                        filename=os.path.basename(side), subclass=np.ndarray, allow_mmap=True
                    )
                written.append(side)
                return type(wrapper), (), dict(wrapper.__dict__)

        import io

        buffer = io.BytesIO()
        Pickler(buffer, protocol=dill.DEFAULT_PROTOCOL).dump(value)
    data = buffer.getvalue()
    with open(filename, "wb") as handle:
        handle.write(zf(data, compress) if compress else data)
    return written


def _write_value(folder: str, stem: str, value: Any, options: dict) -> None:
    serialized = options.get("serialized", True)
    protocol = options.get("protocol")
    fast = options.get("fast", False) or options.get("compression", 0)
    if not serialized:
        source = "__init__.py" if stem == "output" else "__args__.py"
        with open(os.path.join(folder, source), "w", encoding="utf-8") as handle:
            handle.write(f"memo = {value!r}\n")
    elif isinstance(protocol, str):
        with open(os.path.join(folder, f"{stem}.json"), "w", encoding="utf-8") as handle:
            json.dump(value, handle)
    elif fast:
        fast_dump(value, os.path.join(folder, f"{stem}.pkl"), options.get("compression", 0))
    else:
        with open(os.path.join(folder, f"{stem}.pkl"), "wb") as handle:
            dill.dump(value, handle, protocol=protocol)


def write_dir_archive(root: str, memo: dict, **options: Any) -> None:
    """``K_<fname(key)>/`` per key: the value file, and a key file when fname(key) != key."""
    os.makedirs(root, exist_ok=True)
    for key, value in memo.items():
        folder = os.path.join(root, "K_" + fname(key))
        os.makedirs(folder, exist_ok=True)
        _write_value(folder, "output", value, options)
        if fname(key) != key:
            key_options = {**options, "fast": False, "compression": 0}
            _write_value(folder, "input", key, key_options)


# --- SQL ------------------------------------------------------------------------------------
def write_sqltable(url: str, table: str, memo: dict, serialized: bool = True) -> None:
    """A ``"Kkey" VARCHAR(255) PRIMARY KEY, "Kval" BLOB|TEXT`` table, one row per key."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    kind = "BLOB" if serialized else "TEXT"
    with engine.begin() as conn:
        conn.exec_driver_sql(
            f'CREATE TABLE {table} ("Kkey" VARCHAR(255) NOT NULL PRIMARY KEY, "Kval" {kind})'
        )
        for key, value in memo.items():
            stored = dill.dumps(value) if serialized else value
            conn.exec_driver_sql(f"INSERT INTO {table} VALUES (?, ?)", (key, stored))
    engine.dispose()


def write_sql_per_key(url: str, memo: dict) -> None:
    """The classic sql_archive: one table per key, one row holding the value."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for key, value in memo.items():
            conn.exec_driver_sql(
                f'CREATE TABLE "{key}" ("Kkeyqwg907" VARCHAR(255) PRIMARY KEY, "Kvalmol142" BLOB)'
            )
            conn.exec_driver_sql(
                f'INSERT INTO "{key}" VALUES (?, ?)', ("Kkeyqwg907", dill.dumps(value))
            )
    engine.dispose()

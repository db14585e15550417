"""pandas interop (extra ``pandas``): an archive as a DataFrame and back (spec 7.11).

:func:`_to_frame` gives a DataFrame indexed by the keys, with one column named after the
archive (``''`` without a name) holding the memory contents of a ``cache`` front (or the
contents of a raw archive), and for a cache front a second column ``'__archive__'`` holding
the backend's contents. ``columns.name`` is the backend's class name and ``index.name`` the
``repr`` of its ``state``. :func:`_from_frame` rebuilds the archive from such a frame.

Deliberate differences from classic klepto: the state is read back with
``ast.literal_eval``, never ``eval``; tuple keys stay single keys (no ``MultiIndex``); and a
missing pandas raises :class:`~klepto.errors.MissingDependencyError` (an ``ImportError``
naming the extra) rather than ``ValueError``.
"""

from __future__ import annotations

import ast
import math
from typing import Any

from klepto.archives._base import archive_name
from klepto.errors import require

__all__ = ["_from_frame", "_to_frame"]

_ARCHIVE_COLUMN = "__archive__"


def _pandas() -> Any:
    return require("pandas", "pandas", "DataFrame support (to_frame/from_frame)")


def _column(pd: Any, contents: dict[Any, Any], index: Any) -> Any:
    values = [contents.get(key, math.nan) for key in index]
    return pd.Series(values, index=index, dtype=object)


def _to_frame(archive: Any) -> Any:
    """``archive`` (a cache front or a raw archive) as a pandas DataFrame."""
    from klepto.archives._cached import cache

    pd = _pandas()
    cached = isinstance(archive, cache)
    backend = archive.archive if cached else archive
    memory = dict(archive) if cached else backend.__asdict__()
    stored = backend.__asdict__() if cached else {}
    keys = list(memory) + [key for key in stored if key not in memory]
    index = pd.Index(keys, dtype=object, tupleize_cols=False)
    name = archive_name(backend)
    columns = {"" if name is None else str(name): _column(pd, memory, index)}
    if cached:
        columns[_ARCHIVE_COLUMN] = _column(pd, stored, index)
    frame = pd.DataFrame(columns, index=index)
    frame.columns.name = type(backend).__name__
    frame.index.name = repr(backend.state)
    return frame


def _cells(frame: Any, column: Any) -> dict[Any, Any]:
    """The non-missing cells of ``column`` as a dict (missing cells read as NaN)."""
    out = {}
    for key, value in frame[column].items():
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        out[key] = value
    return out


def _state(frame: Any) -> dict[str, Any]:
    try:
        state = ast.literal_eval(frame.index.name) if frame.index.name else {}
    except (ValueError, SyntaxError):
        return {}
    return state if isinstance(state, dict) else {}


def _location(state: dict[str, Any], column: Any) -> Any:
    """Where to reopen the archive: its ``id`` (a SQL table's ``root?table=id``)."""
    location = state.pop("id", None)
    root = state.pop("root", None)
    if root is not None and location is not None:
        return f"{root}?table={location}"
    if location is None and column not in ("", None):
        return column
    return location


def _from_frame(frame: Any) -> Any:
    """The archive a :func:`_to_frame` frame describes: same kind, location and contents."""
    from klepto import archives

    kind = frame.columns.name or "dict_archive"
    if not kind.endswith("_archive"):
        kind += "_archive"
    factory = getattr(archives, kind, None)
    if factory is None:
        raise ValueError(f"unknown archive kind {kind!r} in the frame's columns.name")
    state = _state(frame)
    column = frame.columns[0] if len(frame.columns) else ""
    location = _location(state, column)
    options = {k: v for k, v in state.items() if v is not None}
    cached = len(frame.columns) > 1
    front = factory(
        location, _cells(frame, column) if len(frame.columns) else {}, cached, **options
    )
    if cached:
        front.archive.update(_cells(frame, frame.columns[1]))
    return front

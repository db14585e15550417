"""In-memory backends: ``dict_archive`` (a dict) and ``null_archive`` (always empty)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from klepto.archives._base import Archive

__all__ = ["dict_archive", "null_archive"]


class dict_archive(Archive):
    """A backend archive held in memory (lost with the process)."""

    kind = "dict"

    def __init__(self, name: Any = None, **state: Any) -> None:
        super().__init__(id=name, **state)
        self._data: dict[Any, Any] = {}

    def _get(self, key: Any) -> Any:
        return self._data[key]

    def _set(self, key: Any, value: Any) -> None:
        self._data[key] = value

    def _delete(self, key: Any) -> None:
        del self._data[key]

    def _keys(self) -> Iterator[Any]:
        return iter(list(self._data))

    def _len(self) -> int:
        return len(self._data)

    def _contains(self, key: Any) -> bool:
        return key in self._data

    def _set_many(self, items: list[tuple[Any, Any]]) -> None:
        self._data.update(items)

    def _clear(self) -> None:
        self._data.clear()

    def _stored_items(self) -> dict[Any, Any]:
        return dict(self._data)

    def copy(self, name: Any = None) -> dict_archive:
        """A new dict_archive with the same contents (and name, unless ``name`` is given)."""
        duplicate = type(self)(self.name if name is None else name)
        duplicate._data.update(self._data)
        return duplicate

    def __repr__(self) -> str:
        return f"dict_archive({self.__asdict__()!r}, cached=False)"

    def __getstate__(self) -> dict[str, Any]:
        return {"state": self.__state__, "data": self._data}

    def __setstate__(self, saved: dict[str, Any]) -> None:
        Archive.__init__(self, **saved["state"])
        self._data = saved["data"]


class null_archive(Archive):
    """An archive that is always empty: writes are discarded. Means "no archive"."""

    kind = "null"

    def __init__(self, name: Any = None, **state: Any) -> None:
        super().__init__(id=name, **state)

    def _set(self, key: Any, value: Any) -> None:
        """Discard the value."""

    def _set_many(self, items: list[tuple[Any, Any]]) -> None:
        """Discard the values."""

    def _len(self) -> int:
        return 0

    def setdefault(self, key: Any, default: Any = None) -> Any:
        """Return ``default`` without storing it."""
        return self.get(key, default)

    def _stored_items(self) -> dict[Any, Any]:
        return {}

    def copy(self, name: Any = None) -> null_archive:
        return type(self)(self.name if name is None else name)

    def __repr__(self) -> str:
        return "null_archive(cached=False)"

    def __getstate__(self) -> dict[str, Any]:
        return {"state": self.__state__}

    def __setstate__(self, saved: dict[str, Any]) -> None:
        Archive.__init__(self, **saved["state"])

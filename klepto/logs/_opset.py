"""Sets in the operation store (see :mod:`klepto.logs._opnodes` for the containers' rules)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, MutableSet
from typing import Any

from klepto.logs._opnodes import KINDS, _Node

__all__ = ["StoreSet"]


class StoreSet(_Node, MutableSet[Any]):
    """A set in an operation store: ``add``, ``discard`` and ``clear`` are logged (and so
    ``remove``, ``pop``, ``update`` and the in-place operators). Elements are plain hashable
    values; adding an element already present, or discarding an absent one, logs nothing."""

    __slots__ = ()

    def __contains__(self, value: object) -> bool:
        return value in self._data

    def __iter__(self) -> Iterator[Any]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def _klepto_plain(self) -> set[Any]:
        return set(self._data)

    @classmethod
    def _from_iterable(cls, iterable: Iterable[Any]) -> set[Any]:
        return set(iterable)  # s | t and friends give plain sets, as on a frozenset view

    def add(self, value: Any) -> None:
        self._check()
        data, memory = self._element(value)
        if memory in self._data:
            return
        root = self._root
        if root._txn is not None:
            root._touch(self)
        self._data.add(memory)
        root._logged(("add", self._path(), data))

    def discard(self, value: Any) -> None:
        self._check()
        if value not in self._data:
            return
        data = self._element(value)[0]
        root = self._root
        if root._txn is not None:
            root._touch(self)
        self._data.discard(value)
        root._logged(("dis", self._path(), data))

    def update(self, *iterables: Iterable[Any]) -> None:
        for iterable in iterables:
            for value in list(iterable):
                self.add(value)

    def clear(self) -> None:
        self._check()
        root = self._root
        if root._txn is not None:
            root._touch(self)
        self._data.clear()
        root._logged(("clr", self._path()))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, StoreSet):
            other = other._data
        if isinstance(other, (set, frozenset)):
            return self._data == other  # type: ignore[no-any-return]
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]


KINDS[set] = StoreSet

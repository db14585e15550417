"""The containers of the operation store: dicts, lists and sets whose mutations are logged.

A container (*node*) wraps a plain ``dict``/``list``/``set`` (``_data``) whose values are
plain values or child nodes, and knows its parent and its key there (an index in a list,
kept up to date when the list shifts). Every mutating method

1. validates its arguments and encodes the operation (so a refused call changes nothing),
2. records the container's old contents when a transaction is open (for rollback),
3. changes the plain data, and
4. hands the operation to the root, which commits it (or batches it).

Operations are tuples ``(code, path, args...)``; ``path`` is the tuple of keys and indices
from the root, with keys encoded (see :mod:`klepto.logs._opcodec`). The op codes and their
arguments are listed in ``docs/formats.rst`` ("Operation store").

Assigning a container copies it in; a container that is replaced or removed is *detached*:
reading it still works, changing it raises :class:`DetachedError`, because that change could
not be logged.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Iterator, MutableMapping, MutableSequence
from typing import Any

from klepto.errors import ArchiveClosedError, KleptoError

__all__ = ["KINDS", "DetachedError", "StoreDict", "StoreList", "plain", "set_alive", "wrap"]

_MISSING: Any = object()
_SMALL = 1 << 62  # ints inside +/-_SMALL skip the size check
KINDS: dict[type, type[_Node]] = {}  # plain container type -> node class (each registers)


class DetachedError(KleptoError, RuntimeError):
    """A container removed from its store (replaced, deleted, rolled back) was changed."""


class _Node:
    """What every store container has: its data, its root, and where it sits."""

    __slots__ = ("__weakref__", "_alive", "_data", "_ekey", "_key", "_parent", "_pcache", "_root")

    _data: Any

    def _init_node(self, data: Any, root: Any, parent: Any, key: Any) -> None:
        self._data = data
        self._root = root
        self._parent = parent
        self._key = key
        self._ekey = _MISSING
        self._alive = True
        self._pcache: tuple[int, tuple[Any, ...]] | None = None

    # --- where am I -----------------------------------------------------------------------
    def _path(self) -> tuple[Any, ...]:
        root = self._root
        cache = self._pcache
        if cache is not None and cache[0] == root._layout:
            return cache[1]
        parent = self._parent
        if type(parent._data) is list:
            step = self._key
        else:
            step = self._ekey
            if step is _MISSING:
                step = self._ekey = root._codec.encode_key(self._key)
        path = (*parent._path(), step)
        self._pcache = (root._layout, path)
        return path

    def _check(self) -> None:
        """Raise unless this container may be changed now (attached, store open)."""
        if not self._alive:
            raise DetachedError(
                f"this {type(self).__name__} was removed from its store (replaced, deleted "
                "or rolled back); changing it would not be logged. Take the container "
                "from the store again"
            )
        if self._root._closed:
            raise ArchiveClosedError("the operation store is closed")

    def _value(self, value: Any, key: Any) -> tuple[Any, Any]:
        """``(op data, in-memory value)`` for ``value`` stored under ``key`` here."""
        kind = type(value)
        if (
            (kind is float and value - value == 0.0)
            or kind is str
            or kind is bool
            or value is None
            or (kind is int and -_SMALL < value < _SMALL)
        ):
            return value, value
        root = self._root
        data = root._codec.encode(value)
        return data, wrap(root._codec.decode(data), root, self, key)

    def _element(self, value: Any) -> tuple[Any, Any]:
        """``(op data, in-memory value)`` of a dict key or set element."""
        kind = type(value)
        if kind is str or (kind is int and -_SMALL < value < _SMALL):
            return value, value
        codec = self._root._codec
        data = codec.encode_key(value)
        return data, codec.decode(data)

    def _log(self, op: tuple[Any, ...]) -> None:
        self._root._logged(op)

    def _klepto_plain(self) -> Any:
        raise NotImplementedError

    def _children(self) -> Iterator[_Node]:
        """The containers directly inside this one."""
        return iter(())

    def _wrap_children(self) -> None:
        """Turn the plain containers inside the (new) data into nodes."""

    def copy(self) -> Any:
        """A plain, deep copy of the contents (``dict``/``list``/``set``), not logged."""
        return plain(self)

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickling or copying a store container gives its plain contents, never the store.
        value = plain(self)
        return (type(value), (value,))

    def __repr__(self) -> str:
        return repr(self._data)


class StoreDict(_Node, MutableMapping[Any, Any]):
    """A dict in an operation store: ``d[k] = v``, ``del d[k]`` and ``clear()`` are logged
    (and so everything built on them: ``update``, ``pop``, ``setdefault``...)."""

    __slots__ = ()

    def __getitem__(self, key: Any) -> Any:
        return self._data[key]

    def __setitem__(self, key: Any, value: Any) -> None:
        self._check()
        if type(key) is not str:  # the in-memory key is the decoded one, as in a replay
            ekey, key = self._element(key)
        else:
            ekey = key
        data, memory = self._value(value, key)
        root = self._root
        if root._txn is not None:
            root._touch(self)
        items = self._data
        old = items.get(key, _MISSING)
        items[key] = memory
        if isinstance(old, _Node):
            set_alive(old, False)
        root._logged(("set", self._path(), ekey, data))

    def __delitem__(self, key: Any) -> None:
        self._check()
        items = self._data
        if key not in items:
            raise KeyError(key)
        ekey = key if type(key) is str else self._element(key)[0]
        root = self._root
        if root._txn is not None:
            root._touch(self)
        old = items.pop(key)
        if isinstance(old, _Node):
            set_alive(old, False)
        root._logged(("del", self._path(), ekey))

    def clear(self) -> None:
        self._check()
        root = self._root
        if root._txn is not None:
            root._touch(self)
        for old in self._data.values():
            if isinstance(old, _Node):
                set_alive(old, False)
        self._data.clear()
        root._logged(("clr", self._path()))

    def _klepto_plain(self) -> dict[Any, Any]:
        return {k: plain(v) for k, v in self._data.items()}

    def _children(self) -> Iterator[_Node]:
        return (v for v in self._data.values() if isinstance(v, _Node))

    def _wrap_children(self) -> None:
        items = self._data
        for k, v in items.items():
            if type(v) in KINDS:
                items[k] = wrap(v, self._root, self, k)

    def popitem(self) -> tuple[Any, Any]:
        """Remove and return the last item, as ``dict.popitem`` does (LIFO)."""
        if not self._data:
            raise KeyError("popitem(): store dict is empty")
        key = next(reversed(self._data))
        value = self._data[key]
        del self[key]
        return key, value

    def __iter__(self) -> Iterator[Any]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def get(self, key: Any, default: Any = None) -> Any:
        return self._data.get(key, default)

    def keys(self) -> Any:
        return self._data.keys()

    def items(self) -> Any:
        return self._data.items()

    def values(self) -> Any:
        return self._data.values()


class StoreList(_Node, MutableSequence[Any]):
    """A list in an operation store. Logged: item assignment and deletion (negative indices
    are logged as the position they mean), ``append``, ``insert``, ``extend``, ``pop``,
    ``remove``, ``clear``, ``reverse`` and ``sort``. Slice assignment and deletion are
    refused (``TypeError``)."""

    __slots__ = ("_nodes",)

    def _init_node(self, data: Any, root: Any, parent: Any, key: Any) -> None:
        _Node._init_node(self, data, root, parent, key)
        self._nodes = 0  # how many items are containers (their indices need upkeep)

    def _klepto_plain(self) -> list[Any]:
        return [plain(v) for v in self._data]

    def _children(self) -> Iterator[_Node]:
        return (v for v in self._data if isinstance(v, _Node))

    def _wrap_children(self) -> None:
        items = self._data
        for i, v in enumerate(items):
            if type(v) in KINDS:
                items[i] = wrap(v, self._root, self, i)
                self._nodes += 1

    def _position(self, index: Any, size: int) -> int:
        if isinstance(index, slice):
            raise TypeError("store lists do not support slice assignment or deletion")
        i = operator.index(index)
        if i < 0:
            i += size
        if not 0 <= i < size:
            raise IndexError("store list index out of range")
        return i

    def _shifted(self, start: int) -> None:
        """Items from ``start`` on moved: renumber the containers among them."""
        if self._nodes:
            items = self._data
            for i in range(start, len(items)):
                item = items[i]
                if isinstance(item, _Node):
                    item._key = i
            self._root._layout += 1

    def __getitem__(self, index: Any) -> Any:
        return self._data[index]

    def __len__(self) -> int:
        return len(self._data)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._data)

    def __contains__(self, value: object) -> bool:
        return value in self._data

    def __setitem__(self, index: Any, value: Any) -> None:
        self._check()
        items = self._data
        i = self._position(index, len(items))
        data, memory = self._value(value, i)
        root = self._root
        if root._txn is not None:
            root._touch(self)
        old = items[i]
        items[i] = memory
        self._nodes += isinstance(memory, _Node) - isinstance(old, _Node)
        if isinstance(old, _Node):
            set_alive(old, False)
        root._logged(("set", self._path(), i, data))

    def __delitem__(self, index: Any) -> None:
        self._check()
        items = self._data
        i = self._position(index, len(items))
        self._remove_at(i)

    def _remove_at(self, i: int) -> Any:
        root = self._root
        if root._txn is not None:
            root._touch(self)
        old = self._data.pop(i)
        if isinstance(old, _Node):
            self._nodes -= 1
            set_alive(old, False)
        self._shifted(i)
        root._logged(("del", self._path(), i))
        return old

    def append(self, value: Any) -> None:
        # The hot path of a results log (store['losses'].append(x)): kept inline.
        root = self._root
        if not self._alive or root._closed:
            self._check()
        kind = type(value)
        if (
            (kind is float and value - value == 0.0)
            or kind is str
            or (kind is int and -_SMALL < value < _SMALL)
        ):
            data = memory = value
        else:
            data, memory = self._value(value, len(self._data))
            if isinstance(memory, _Node):
                self._nodes += 1
        if root._txn is not None:
            root._touch(self)
        self._data.append(memory)
        cache = self._pcache
        path = cache[1] if cache is not None and cache[0] == root._layout else self._path()
        pending = root._pending
        pending.append(("app", path, data))
        if len(pending) >= root._limit:
            root._writer.commit()

    def insert(self, index: Any, value: Any) -> None:
        self._check()
        items = self._data
        size = len(items)
        i = operator.index(index)
        i = min(max(i + size if i < 0 else i, 0), size)  # list.insert clamps
        data, memory = self._value(value, i)
        root = self._root
        if root._txn is not None:
            root._touch(self)
        items.insert(i, memory)
        if isinstance(memory, _Node):
            self._nodes += 1
        self._shifted(i)
        root._logged(("ins", self._path(), i, data))

    def extend(self, values: Iterable[Any]) -> None:
        self._check()
        values = list(values)  # once, even from a generator or from this very list
        items = self._data
        start = len(items)
        pairs = [self._value(v, start + k) for k, v in enumerate(values)]
        root = self._root
        if root._txn is not None:
            root._touch(self)
        memory = [m for _, m in pairs]
        items.extend(memory)
        self._nodes += sum(isinstance(m, _Node) for m in memory)
        root._logged(("ext", self._path(), [d for d, _ in pairs]))

    def __iadd__(self, values: Iterable[Any]) -> StoreList:
        self.extend(values)
        return self

    def pop(self, index: Any = -1) -> Any:
        self._check()
        items = self._data
        if not items:
            raise IndexError("pop from empty store list")
        return self._remove_at(self._position(index, len(items)))

    def remove(self, value: Any) -> None:
        self._check()
        self._remove_at(self._data.index(value))

    def clear(self) -> None:
        self._check()
        root = self._root
        if root._txn is not None:
            root._touch(self)
        if self._nodes:
            for old in self._data:
                if isinstance(old, _Node):
                    set_alive(old, False)
        self._data.clear()
        self._nodes = 0
        root._logged(("clr", self._path()))

    def reverse(self) -> None:
        self._check()
        root = self._root
        if root._txn is not None:
            root._touch(self)
        self._data.reverse()
        self._shifted(0)
        root._logged(("rev", self._path()))

    def sort(self, *, key: Any = None, reverse: bool = False) -> None:
        """Sort in place (stable, as ``list.sort``); logged as the resulting permutation."""
        self._check()
        items = self._data
        if key is None:
            order = sorted(range(len(items)), key=items.__getitem__, reverse=reverse)
        else:
            order = sorted(range(len(items)), key=lambda i: key(items[i]), reverse=reverse)
        root = self._root
        if root._txn is not None:
            root._touch(self)
        items[:] = [items[i] for i in order]
        self._shifted(0)
        root._logged(("perm", self._path(), order))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, StoreList):
            other = other._data
        if isinstance(other, list):
            return self._data == other  # type: ignore[no-any-return]
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __lt__(self, other: Any) -> bool:
        return self._data < _as_list(other)  # type: ignore[no-any-return]

    def __le__(self, other: Any) -> bool:
        return self._data <= _as_list(other)  # type: ignore[no-any-return]

    def __gt__(self, other: Any) -> bool:
        return self._data > _as_list(other)  # type: ignore[no-any-return]

    def __ge__(self, other: Any) -> bool:
        return self._data >= _as_list(other)  # type: ignore[no-any-return]


def _as_list(other: Any) -> list[Any]:
    if isinstance(other, StoreList):
        return other._data  # type: ignore[no-any-return]
    if isinstance(other, list):
        return other
    raise TypeError(f"cannot compare a store list with {type(other).__name__}")


def wrap(value: Any, root: Any, parent: Any, key: Any) -> Any:
    """``value`` (plain, owned by the store from now on) with its containers as nodes."""
    kind = KINDS.get(type(value))
    if kind is None:
        return value
    node = kind.__new__(kind)
    node._init_node(value, root, parent, key)
    node._wrap_children()
    return node


def plain(value: Any) -> Any:
    """A deep copy of ``value`` with every store container turned into dict/list/set."""
    return value._klepto_plain() if isinstance(value, _Node) else value


def set_alive(node: _Node, alive: bool) -> None:
    """Attach or detach ``node`` and every container below it."""
    stack = [node]
    while stack:
        current = stack.pop()
        current._alive = alive
        stack.extend(current._children())


KINDS[dict] = StoreDict
KINDS[list] = StoreList

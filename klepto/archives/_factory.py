"""Public archive factories: classic names that build a backend, raw or behind a cache.

``file_archive(name=None, dict=None, cached=True, **kwds)`` builds the backend, then returns
it (``cached=False``) or a :class:`~klepto.archives.cache` in front of it (``cached=True``,
the default), seeded with ``dict``. ``isinstance(x, file_archive)`` is true for the backend
and for a cache whose backend it is. ``autodump=False`` stops a cache front from writing its
unsaved entries when it is closed or at interpreter exit. ``expire=`` (seconds),
``size_limit=`` (bytes) and ``timer=`` configure the backend's policies
(:meth:`klepto.archives.archive.configure`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from klepto.archives._cached import cache

__all__ = ["ArchiveFactory", "make_factory"]

#: Keywords every factory takes for the archive policies (see ``Archive.configure``).
_POLICIES = ("expire", "size_limit", "timer")


class ArchiveFactory(type):
    """Metaclass of the public factories: construction builds, isinstance looks through."""

    __backend__: type

    def __instancecheck__(cls, obj: Any) -> bool:
        backend = obj.archive if isinstance(obj, cache) else obj
        return isinstance(backend, cls.__backend__)

    def __subclasscheck__(cls, sub: type) -> bool:
        return isinstance(sub, type) and issubclass(sub, cls.__backend__)


def _build(cls: Any, name: Any = None, dict: Any = None, cached: bool = True, **kwds: Any) -> Any:
    autodump = kwds.pop("autodump", True)
    policies = {k: kwds.pop(k) for k in _POLICIES if kwds.get(k) is not None}
    backend = cls.__open__(name, **kwds)
    if policies:
        backend.configure(**policies)
    front = cache(archive=backend) if cached else backend
    if cached and not autodump:
        front.autodump = False
    if dict:
        front.update(dict)
    return front


def _from_frame(cls: Any, dataframe: Any) -> Any:
    """The archive a ``to_frame()`` DataFrame describes (its kind is in the frame)."""
    from klepto.archives._frame import _from_frame

    return _from_frame(dataframe)


def make_factory(
    backend: type, opener: Callable[..., Any] | None = None, doc: str | None = None
) -> ArchiveFactory:
    """The public factory class for ``backend``; ``opener(name, **kwds)`` builds the backend."""
    open_backend = opener if opener is not None else backend
    namespace = {
        "__backend__": backend,
        "__new__": _build,
        "__open__": staticmethod(open_backend),
        "from_frame": classmethod(_from_frame),
        "__doc__": doc or backend.__doc__,
        "__module__": "klepto.archives",
    }
    return ArchiveFactory(backend.__name__, (), namespace)

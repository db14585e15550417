"""``picklemap``: keys serialized with a pickling module (``dill``, ``pickle``, ``json``)."""

from __future__ import annotations

from types import ModuleType
from typing import Any

from klepto import crypto
from klepto.keymaps._base import NOSENTINEL, keymap

__all__ = ["picklemap"]


class picklemap(keymap):
    """A keymap whose keys are ``crypto.pickle(base_key, serializer, byref=True, ...)``.

    ``serializer`` is a module or a module name (stored as the name); ``None`` gives
    ``repr(base_key)``. ``byref`` (default True) and any other kwds are passed to the
    serializer's ``dumps``, and all of them are dropped if ``dumps`` rejects them (stdlib
    ``pickle`` and ``json`` know no ``byref``).
    """

    # Pickles (stdlib and dill) refer to the public path: the class name shadows its module.
    __module__ = "klepto.keymaps"
    __stub__ = "serializer"

    def __init__(
        self,
        typed: bool = False,
        flat: bool = True,
        sentinel: Any = NOSENTINEL,
        serializer: ModuleType | str | None = None,
        **kwds: Any,
    ) -> None:
        kwds.setdefault("byref", True)
        super().__init__(typed, flat, sentinel, **kwds)
        if isinstance(serializer, ModuleType):
            serializer = serializer.__name__
        self.__type__ = serializer

    def _transform(self, key: Any) -> Any:
        return crypto.pickle(key, serializer=self.__type__, **self._config)

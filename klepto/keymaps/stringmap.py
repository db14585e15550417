"""``stringmap``: keys converted to text (or to encoded bytes of their repr)."""

from __future__ import annotations

from typing import Any

from klepto import crypto
from klepto.keymaps._base import NOSENTINEL, keymap

__all__ = ["stringmap"]


class stringmap(keymap):
    """A keymap whose keys are ``crypto.string(base_key, encoding)``.

    ``encoding=None`` gives ``str(base_key)``; ``'repr'`` gives its repr; a codec name such as
    ``'utf_8'`` gives ``repr(base_key)`` encoded to bytes. Extra kwds (``strict=``) go to
    ``crypto.string``. String keys work for unhashable arguments (lists, dicts).
    """

    # Pickles (stdlib and dill) refer to the public path: the class name shadows its module.
    __module__ = "klepto.keymaps"
    __stub__ = "encoding"

    def __init__(
        self,
        typed: bool = False,
        flat: bool = True,
        sentinel: Any = NOSENTINEL,
        encoding: str | None = None,
        **kwds: Any,
    ) -> None:
        super().__init__(typed, flat, sentinel, **kwds)
        self.__type__ = encoding

    def _transform(self, key: Any) -> Any:
        return crypto.string(key, encoding=self.__type__, **self._config)

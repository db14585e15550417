"""``hashmap``: keys hashed with the builtin ``hash`` or a hashlib algorithm."""

from __future__ import annotations

from typing import Any

from klepto import crypto
from klepto.keymaps._base import NOSENTINEL, keymap

__all__ = ["hashmap"]


class hashmap(keymap):
    """A keymap whose keys are ``crypto.hash(base_key, algorithm)``.

    ``algorithm=None`` uses the builtin ``hash`` (an int that, for keys holding a str, differs
    between processes unless ``PYTHONHASHSEED`` is fixed, and that fails on unhashable keys);
    a hashlib name (``'md5'``, ``'sha256'``, ...) gives the hex digest of the key's repr,
    stable everywhere.
    """

    # Pickles (stdlib and dill) refer to the public path: the class name shadows its module.
    __module__ = "klepto.keymaps"
    __stub__ = "algorithm"

    def __init__(
        self,
        typed: bool = False,
        flat: bool = True,
        sentinel: Any = NOSENTINEL,
        algorithm: str | None = None,
        **kwds: Any,
    ) -> None:
        super().__init__(typed, flat, sentinel, **kwds)
        self.__type__ = algorithm

    def _transform(self, key: Any) -> Any:
        return crypto.hash(key, algorithm=self.__type__, **self._config)

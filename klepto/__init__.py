"""klepto: memoization and archiving for long computations.

Results of function calls are cached in memory under a pluggable eviction policy
(``lru_cache``, ``lfu_cache``, ``mru_cache``, ``rr_cache``, ``inf_cache``, ``no_cache``),
spill to a file, a directory or a SQL database (``klepto.archives``) and come back in a new
process. ``klepto.safe`` has forgiving variants of the decorators; ``klepto.keymaps`` turns
calls into keys; ``klepto.records`` and ``klepto.logs`` keep transactional logs.

Importing klepto loads the decorators and the in-memory archives only; the file, directory,
SQL, HDF and Redis backends load when first named (see :mod:`klepto.archives`).
"""

import importlib
from typing import TYPE_CHECKING, Any

from klepto import archives, crypto, keymaps, rounding, safe, tools
from klepto._about import CITATION as _CITATION
from klepto._about import __author__, __license__, __version__
from klepto._cache import inf_cache, lfu_cache, lru_cache, mru_cache, no_cache, rr_cache
from klepto._inspect import NULL, _keygen, isvalid, keygen, signature, strip_markup, validate
from klepto._memolog import log_calls
from klepto._typing import Memoized


def license() -> None:
    """Print the license."""
    print(__license__)


def citation() -> None:
    """Print the citation."""
    print(_CITATION)


# Hidden from type checkers so that a misspelt attribute of klepto is still an error there.
if not TYPE_CHECKING:

    def __getattr__(name: str) -> Any:
        """A submodule not imported yet (``klepto.records``, ``klepto.stores``...), on first use.

        Until the backends loaded lazily, importing klepto happened to import ``records``,
        ``integrity`` and ``serializers`` too, so code could reach them as attributes; it still can.
        """
        if not name.startswith("__"):
            try:
                return importlib.import_module(f"{__name__}.{name}")
            except ModuleNotFoundError as exc:
                if exc.name != f"{__name__}.{name}":
                    raise
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

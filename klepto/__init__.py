"""klepto: memoization and archiving for long computations.

Results of function calls are cached in memory under a pluggable eviction policy
(``lru_cache``, ``lfu_cache``, ``mru_cache``, ``rr_cache``, ``inf_cache``, ``no_cache``),
spill to a file, a directory or a SQL database (``klepto.archives``) and come back in a new
process. ``klepto.safe`` has forgiving variants of the decorators; ``klepto.keymaps`` turns
calls into keys; ``klepto.records`` and ``klepto.logs`` keep transactional logs.
"""

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

"""klepto: memoization and archiving for long computations.

Results of function calls are cached in memory under a pluggable eviction policy, spill to a
file, a directory or a SQL database, and come back in a new process.
"""

__version__ = "0.3.0.dev0"
__author__ = "the klepto developers"

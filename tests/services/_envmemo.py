"""A module-level memoized function whose shared archive comes from the environment.

This is how a program shares a cache with its workers (see docs/distributed.rst): the
workers import the module, so the function travels by name and each worker opens its own
connection to the archive. ``KLEPTO_TEST_MEMO`` and ``KLEPTO_TEST_MARKS`` are locations
(``klepto.stores.open_archive``) set by the test before it starts the workers.
"""

from __future__ import annotations

import os
import time
import uuid

from klepto import inf_cache
from klepto.stores import open_archive

results = open_archive(os.environ["KLEPTO_TEST_MEMO"])
marks = open_archive(os.environ["KLEPTO_TEST_MARKS"])


@inf_cache(cache=results)
def slow_square(x: int) -> int:
    """``x * x``, leaving a mark per computation (the test counts them)."""
    marks[(x, uuid.uuid4().hex)] = os.getpid()
    time.sleep(0.02)
    return x * x

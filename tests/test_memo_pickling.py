"""Memoized functions travel by value with cloudpickle (as dask sends __main__ functions)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import cloudpickle, klepto, sys

    @klepto.lru_cache()
    def double(x):
        return 2 * x

    double(21)
    blob = cloudpickle.dumps(double)  # defined in __main__: pickled by value
    clone = cloudpickle.loads(blob)
    assert clone(21) == 42 and clone.info().hit == 1, clone.info()
    assert clone(5) == 10
    sys.stdout.write("ok")
    """
)


def test_main_function_pickles_by_value_with_cloudpickle(tmp_path):
    pytest.importorskip("cloudpickle")
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    done = subprocess.run(
        [sys.executable, str(script)], check=False, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and done.stdout == "ok", done.stderr


def test_memo_lock_pickles_as_a_new_unlocked_lock():
    import pickle

    from klepto._memoize import MemoLock

    lock = MemoLock()
    lock.acquire()
    assert lock.locked()
    clone = pickle.loads(pickle.dumps(lock))
    assert not clone.locked()
    lock.release()
    assert not lock.locked()

"""B2: damage one random file of a dir_archive (truncate, flip a byte, zero a 4 KiB page,
append garbage) and check that nothing wrong is ever read and nothing is silently lost.

Outcomes per trial: *intact* (everything reads back exactly), *detected* (a documented
error: CorruptArchiveError or SignatureError on open, listing or reading), *wrong* (a
changed or extra value) or *silent loss* (a key missing without an error, or a listed key
raising KeyError). The promise is wrong == silent loss == 0.
"""

from __future__ import annotations

import os
import random
from collections import Counter

import pytest

from klepto.archives import dir_archive
from klepto.errors import CorruptionError
from tests.faults._harness import FAULTS, damage

np = pytest.importorskip("numpy")

pytestmark = pytest.mark.faults

MODES = {
    "default": ({}, {}),
    "fast-memmap": ({"fast": True}, {"memmode": "r"}),
    "zlib": ({"compression": 3}, {}),
    "signed": ({"key": "secret"}, {"key": "secret"}),
}


def contents(seed: int) -> dict:
    rng = random.Random(seed)
    data = {f"small{i}": "x" * rng.randint(1, 200) for i in range(6)}
    data |= {("tuple", i): os.urandom(rng.randint(1000, 8000)) for i in range(3)}
    data["nested"] = {"a": [1, 2.5, None], "b": {"c": (1, 2)}}
    data["array"] = np.arange(20_000, dtype="f8")
    data["matrix"] = np.asfortranarray(np.arange(600, dtype="i4").reshape(20, 30))
    return data


def same(a, b) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (
            isinstance(b, np.ndarray)
            and isinstance(a, np.ndarray)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and np.array_equal(a, b)
        )
    return type(a) is type(b) and a == b


def classify(root: str, expected: dict, options: dict) -> str:
    try:
        archive = dir_archive(root, cached=False, **options)
        listed = list(archive)
        found = {key: archive[key] for key in listed}
        direct = {key: archive.get(key, KeyError) for key in expected}
    except CorruptionError:
        return "detected"
    except KeyError:
        return "silent_loss"  # a listed key that cannot be read
    if set(map(repr, listed)) - set(map(repr, expected)):
        return "wrong"
    if len(found) < len(expected) or any(v is KeyError for v in direct.values()):
        return "silent_loss"
    bad = [key for key, value in expected.items() if not same(found[key], value)]
    bad += [key for key, value in expected.items() if not same(direct[key], value)]
    return "wrong" if bad else "intact"


def campaign(tmp_path, mode: str, trials: int) -> Counter:
    write_options, read_options = MODES[mode]
    root = str(tmp_path / mode)
    expected = contents(len(mode))
    dir_archive(root, cached=False, **write_options).update(expected)
    files = sorted(os.path.join(root, name) for name in os.listdir(root))
    outcomes: Counter = Counter()
    rng = random.Random(mode)
    for trial in range(trials):
        fault = FAULTS[trial % 4]
        path = rng.choice(files)
        with open(path, "rb") as handle:
            pristine = handle.read()
        damage(path, fault, rng)
        outcomes[(fault, classify(root, expected, read_options))] += 1
        with open(path, "wb") as handle:
            handle.write(pristine)
    return outcomes


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize(
    "trials", [200, pytest.param(800, marks=[pytest.mark.full, pytest.mark.slow])]
)
def test_damage_is_never_read_as_data(tmp_path, mode, trials):
    outcomes = campaign(tmp_path, mode, trials)
    harmful = {k: n for k, n in outcomes.items() if k[1] in ("wrong", "silent_loss")}
    assert harmful == {}, dict(outcomes)
    truncations = {k[1] for k in outcomes if k[0] == "truncate"}
    assert truncations == {"detected"}, dict(outcomes)

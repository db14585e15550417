"""B2 and B6 for file_archive: damage the archive file or its saved index (truncate, flip a
byte, zero a 4 KiB page, append garbage) and check that nothing wrong is ever read, nothing
is silently lost, and that a long-lived process opening many damaged copies neither hangs
nor leaks file descriptors.

Outcomes per trial: *intact* (everything reads back exactly), *detected* (a documented
error: CorruptArchiveError or SignatureError on open, listing or reading), *wrong* (a
changed or extra value) or *silent loss* (a key missing without an error, or a listed key
raising KeyError). The promise is wrong == silent loss == 0; a truncated archive file is
always detected.
"""

from __future__ import annotations

import gc
import os
import random
import shutil
import time
from collections import Counter
from pathlib import Path

import pytest

from klepto.archives import _filestore, file_archive
from klepto.errors import CorruptionError
from tests.faults._harness import FAULTS, damage

pytestmark = pytest.mark.faults

MODES = {
    "default": {},
    "zlib": {"compression": 3},
    "signed": {"key": "secret"},
    "literal": {"serialized": False},
}


@pytest.fixture(autouse=True)
def small_thresholds(monkeypatch):
    """Save index tables after a few records, so damage can hit tables and indexed records."""
    monkeypatch.setattr(_filestore, "FLUSH_AT", 8)
    monkeypatch.setattr(_filestore, "ADOPT_AT", 16)


def contents(seed: int) -> dict:
    rng = random.Random(seed)
    data = {f"small{i}": "x" * rng.randint(1, 200) for i in range(30)}
    data |= {("tuple", i): os.urandom(rng.randint(1000, 8000)) for i in range(4)}
    data["nested"] = {"a": [1, 2.5, None], "b": {"c": (1, 2)}}
    data["large"] = os.urandom(200_000)
    return data


def build(path: str, options: dict, seed: int) -> dict:
    expected = contents(seed)
    archive = file_archive(path, cached=False, **options)
    items = list(expected.items())
    archive.update(dict(items[:10]))  # one commit of several records (shared frames)
    for key, value in items[10:]:
        archive[key] = value
    archive["gone"] = 1
    del archive["gone"]
    archive.close()
    return expected


def classify(path: str, expected: dict, options: dict) -> str:
    try:
        archive = file_archive(path, cached=False, **options)
        listed = list(archive)
        found = {key: archive[key] for key in listed}
        direct = {key: archive.get(key, KeyError) for key in expected}
        count = len(archive)
    except CorruptionError:
        return "detected"
    except KeyError:
        return "silent_loss"  # a listed key that cannot be read
    if set(map(repr, listed)) - set(map(repr, expected)):
        return "wrong"
    if count != len(expected) or len(found) < len(expected):
        return "silent_loss"
    if any(value is KeyError for value in direct.values()):
        return "silent_loss"
    bad = [key for key, value in expected.items() if found[key] != value]
    bad += [key for key, value in expected.items() if direct[key] != value]
    return "wrong" if bad else "intact"


def campaign(tmp_path, mode: str, trials: int) -> Counter:
    options = MODES[mode]
    path = str(tmp_path / (f"{mode}.py" if mode == "literal" else f"{mode}.pkl"))
    expected = build(path, options, len(mode))
    files = [path, path + ".idx"]
    assert all(os.path.exists(name) for name in files)
    pristine = {name: Path(name).read_bytes() for name in files}
    outcomes: Counter = Counter()
    rng = random.Random(mode)
    for trial in range(trials):
        fault = FAULTS[trial % 4]
        target = files[0] if rng.random() < 0.75 else files[1]
        damage(target, fault, rng)
        which = "file" if target == path else "index"
        outcomes[(which, fault, classify(path, expected, options))] += 1
        for name, data in pristine.items():
            with open(name, "wb") as handle:
                handle.write(data)
    return outcomes


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize(
    "trials", [200, pytest.param(800, marks=[pytest.mark.full, pytest.mark.slow])]
)
def test_damage_is_never_read_as_data(tmp_path, mode, trials):
    outcomes = campaign(tmp_path, mode, trials)
    harmful = {k: n for k, n in outcomes.items() if k[2] in ("wrong", "silent_loss")}
    assert harmful == {}, dict(outcomes)
    truncations = {k[2] for k in outcomes if k[:2] == ("file", "truncate")}
    assert truncations == {"detected"}, dict(outcomes)
    assert {k[2] for k in outcomes if k[1] == "garbage"} == {"intact"}, dict(outcomes)


@pytest.mark.parametrize(
    "opens", [200, pytest.param(1000, marks=[pytest.mark.full, pytest.mark.slow])]
)
def test_many_damaged_opens_neither_hang_nor_leak(tmp_path, opens):
    """B6: damaged copies opened one after another and dropped without closing."""
    source = str(tmp_path / "good.pkl")
    expected = build(source, {}, 3)
    fds_before = len(os.listdir("/proc/self/fd"))
    rng = random.Random(6)
    slowest = 0.0
    for i in range(opens):
        copy = str(tmp_path / f"copy{i % 10}.pkl")
        for suffix in ("", ".idx"):
            shutil.copyfile(source + suffix, copy + suffix)
        damage(copy + ("" if i % 3 else ".idx"), FAULTS[i % 4], rng)
        started = time.monotonic()
        classify(copy, expected, {})
        slowest = max(slowest, time.monotonic() - started)
        if i % 7 == 0:
            gc.collect()
    gc.collect()
    assert slowest < 5.0
    assert len(os.listdir("/proc/self/fd")) <= fds_before + 2
    assert file_archive(source, cached=False).__asdict__() == expected

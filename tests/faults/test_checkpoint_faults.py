"""Checkpoint + incremental log under real faults (reliability A4, B4): kill -9 of a writer
at random moments and at chosen points of ``log``, ``checkpoint`` (inside the archive's
atomic write), the pruning of old checkpoints, the dropping of log segments, and of
``recover``; then damaged checkpoints.

After every kill the harness recovers and compares with the reference fold of the values
the writer acknowledged: the state must be exactly the last acknowledged update's, or the
one in flight. Each run goes through several kill/restart rounds, so recovery after a
restart that logged more is covered too. ``-m full`` runs 100 runs per campaign.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from klepto._canonical import stable_hash
from klepto.errors import CorruptionError
from tests.faults import _cpt_worker as worker

pytestmark = pytest.mark.faults

REPO = Path(__file__).resolve().parents[2]
COUNT = 60
EVERY = 7
FULL = pytest.param(100, marks=[pytest.mark.full, pytest.mark.slow])  # -m full: 100 runs


def spawn(*args: object, env: dict | None = None) -> subprocess.Popen:
    environment = dict(os.environ, PYTHONPATH=str(REPO), **(env or {}))
    command = [sys.executable, "-m", "tests.faults._cpt_worker", *map(str, args)]
    return subprocess.Popen(command, cwd=REPO, env=environment, stdout=subprocess.PIPE)


def finish(proc: subprocess.Popen) -> list[str]:
    lines = proc.stdout.read().decode().splitlines()
    proc.wait(timeout=120)
    return lines


def kill_after_acks(proc: subprocess.Popen, acks: int, delay: float) -> list[str]:
    """SIGKILL ``proc`` ``delay`` s after its ``acks``-th line; every line it printed."""
    lines = []
    for raw in proc.stdout:
        lines.append(raw.decode().strip())
        if len(lines) >= acks or lines[-1] == "END":
            break
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    return lines + finish(proc)


def last_ack(lines: list[str], before: int) -> int:
    """How many values are acknowledged: the recovered count, then every ``A i``."""
    count = before
    for line in lines:
        tag, _, number = line.partition(" ")
        if tag == "R":
            count = max(count, int(number))
        elif tag == "A":
            count = max(count, int(number) + 1)
    return count


def recovered(root: Path, archive: str) -> list[str]:
    with worker._open(str(root), archive) as t:
        return t.recover(create=list, apply=lambda state, item: [*state, item])


def check(root: Path, archive: str, seed: int, acked: int, problems: list, label: str) -> int:
    """Recover twice (idempotent) and compare with the reference; the values now stored."""
    state = recovered(root, archive)
    allowed = (worker.reference(seed, acked), worker.reference(seed, acked + 1))
    if state not in allowed:
        problems.append(f"{label}: recovered {len(state)} values, acked {acked}")
    elif recovered(root, archive) != state:
        problems.append(f"{label}: a second recovery differs")
    return len(state)


def random_kill_run(tmp_path: Path, seed: int, archive: str) -> tuple[list[str], int]:
    """Rounds of run + kill at a random moment, then a last round to the end."""
    rng = random.Random(seed)
    root = tmp_path / f"random{seed}"
    problems: list[str] = []
    landed = stored = 0
    for round_number in range(3):
        proc = spawn("run", root, seed, COUNT, EVERY, archive)
        lines = kill_after_acks(proc, rng.randint(2, 60), rng.uniform(0, 0.003))
        landed += "END" not in lines
        acked = last_ack(lines, stored)
        stored = check(root, archive, seed, acked, problems, f"seed {seed} round {round_number}")
    lines = finish(spawn("run", root, seed, COUNT, EVERY, archive))
    if "END" not in lines or recovered(root, archive) != worker.reference(seed, COUNT):
        problems.append(f"seed {seed}: the final round did not complete the computation")
    shutil.rmtree(root)
    return problems, landed


def targeted_kill_run(tmp_path: Path, seed: int, spec: str, archive: str) -> tuple[list[str], int]:
    """Run with ``CPT_KILL_AT=spec`` (the worker kills itself there), then check."""
    root = tmp_path / f"target{seed}"
    problems: list[str] = []
    proc = spawn("run", root, seed, COUNT, EVERY, archive, env={"CPT_KILL_AT": spec})
    lines = finish(proc)
    died = proc.returncode == -signal.SIGKILL
    acked = last_ack(lines, 0)
    stored = check(root, archive, seed, acked, problems, f"{spec} seed {seed}")
    # restart, log more, kill again at a random moment, and finish
    proc = spawn("run", root, seed, COUNT, EVERY, archive)
    lines = kill_after_acks(proc, random.Random(seed).randint(2, 30), 0.001)
    stored = check(root, archive, seed, last_ack(lines, stored), problems, f"{spec} restart")
    lines = finish(spawn("run", root, seed, COUNT, EVERY, archive))
    if recovered(root, archive) != worker.reference(seed, COUNT):
        problems.append(f"{spec} seed {seed}: the final round did not complete")
    shutil.rmtree(root)
    return problems, died


# Points inside each phase: the n-th file-system write made there (log appends write and
# commit; a checkpoint is the archive's atomic write plus the head hint; pruning and
# dropping unlink). Spread so that the first, middle and last writes are all hit.
TARGETS = [
    "log:1",
    "log:7",
    "log:30",
    "checkpoint:1",
    "checkpoint:2",
    "checkpoint:5",
    "checkpoint:9",
    "prune:1",
    "prune:3",
    "drop:1",
    "drop:2",
]
_SPREAD = {"log": 80, "checkpoint": 14, "prune": 6, "drop": 4}  # writes worth aiming at


def _targets(runs: int) -> list[str]:
    rng = random.Random(runs)
    extra = [
        f"{phase}:{rng.randint(1, top)}" for _ in range(runs) for phase, top in _SPREAD.items()
    ]
    return (TARGETS + extra)[:runs]


@pytest.mark.parametrize("runs", [5, FULL])
def test_kill9_at_random_moments(tmp_path, runs):
    failures, landed = [], 0
    for seed in range(runs):
        archive = "dir" if seed % 3 == 2 else "file"
        problems, hits = random_kill_run(tmp_path, seed, archive)
        failures += problems
        landed += hits
    assert failures == []
    assert landed >= runs, "too few kills landed while the writer was working"


@pytest.mark.parametrize("runs", [11, FULL])
def test_kill9_inside_log_checkpoint_prune_and_drop(tmp_path, runs):
    failures, died = [], 0
    for seed, spec in enumerate(_targets(runs)):
        archive = "dir" if seed % 4 == 3 else "file"
        problems, hit = targeted_kill_run(tmp_path, seed, spec, archive)
        failures += problems
        died += hit
    assert failures == []
    assert died >= runs * 0.8, f"only {died} of {runs} kill points were reached"


@pytest.mark.parametrize("runs", [3, FULL])
def test_kill9_during_recovery_then_recover_again(tmp_path, runs):
    """Recovery is idempotent: killed while replaying (at a chosen entry, or at a random
    moment of a recovery loop), the next recovery gives the same state."""
    failures = []
    for seed in range(runs):
        root = tmp_path / f"recover{seed}"
        archive = "file" if seed % 2 else "dir"
        # one checkpoint of the empty state, then 40 entries to replay
        lines = finish(spawn("run", root, seed, 40, 1000, archive))
        expected = worker.reference(seed, last_ack(lines, 0))
        kill_at = {"CPT_KILL_RECOVER": str(5 + seed % 30)}  # an entry of the 40 replayed
        proc = spawn("run", root, seed, 40, 1000, archive, env=kill_at)
        finish(proc)
        if proc.returncode != -signal.SIGKILL:
            failures.append(f"seed {seed}: the recovery kill was not reached")
        proc = spawn("recover", root, archive)
        kill_after_acks(proc, 1 + seed % 3, random.Random(seed).uniform(0, 0.02))
        for _ in range(2):
            if recovered(root, archive) != expected:
                failures.append(f"seed {seed}: recovery after a killed recovery differs")
        shutil.rmtree(root)
    assert failures == []


def _entry_file(root: Path, gen: int) -> Path:
    return root / "cpt" / ("K_" + stable_hash(("klepto.cpt", "default", "gen", gen)))


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_damaged_newest_checkpoint_after_a_real_run(tmp_path, caplog, damage):
    """B4: the newest checkpoint is damaged; recovery falls back to the previous one plus
    the log and says so (dir archive), and the computation continues."""
    root = tmp_path / "b4"
    lines = finish(spawn("run", root, 1, 50, EVERY, "dir"))
    assert "END" in lines
    with worker._open(str(root), "dir") as t:
        newest = t._store.latest()
    entry = _entry_file(root, newest)
    data = bytearray(entry.read_bytes())
    if damage == "flip":
        data[random.Random(damage).randrange(16, len(data))] ^= 0x04
    else:
        del data[len(data) // 2 :]
    entry.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="klepto.logs.checkpoint"):
        assert recovered(root, "dir") == worker.reference(1, 50)
    assert any("damaged" in record.getMessage() for record in caplog.records)
    lines = finish(spawn("run", root, 1, 60, EVERY, "dir"))
    assert "R 50" in lines and "END" in lines
    assert recovered(root, "dir") == worker.reference(1, 60)


@pytest.mark.parametrize("seed", range(3))
def test_damaged_checkpoint_file_archive_never_loads_damage(tmp_path, seed):
    """B4 on the default file archive: flip or truncate its tail (where the newest
    checkpoint is); recovery gives the right state or raises, never a wrong one."""
    root = tmp_path / "b4file"
    assert "END" in finish(spawn("run", root, seed, 50, EVERY, "file"))
    path = root / "run"
    data = bytearray(path.read_bytes())
    rng = random.Random(seed)
    if seed == 0:
        del data[len(data) - rng.randint(1, 200) :]
    else:
        data[len(data) - rng.randint(1, 400)] ^= 1 << rng.randrange(8)
    path.write_bytes(bytes(data))
    try:
        state = recovered(root, "file")
    except CorruptionError:
        return
    assert state == worker.reference(seed, 50)


POWER_LOSS_CHILD = """
import json, os, signal, sys
synced = {}

def tracking(real):
    def sync(fd):
        real(fd)
        path = os.readlink(f"/proc/self/fd/{fd}")
        if os.path.isfile(path):
            synced[path] = os.fstat(fd).st_size
    return sync

for name in ("fsync", "fdatasync"):
    setattr(os, name, tracking(getattr(os, name)))
from klepto.logs import Transactional
from tests.faults import _cpt_worker as worker

t = Transactional(os.path.join(sys.argv[1], "run"), durability="durable")
state = t.recover(create=list, apply=lambda s, v: [*s, v])
for i in range(int(sys.argv[2])):
    t.log(worker.value(3, i))
    state.append(worker.value(3, i))
    if i % 5 == 4:
        t.checkpoint(state)
print(json.dumps(synced), flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc to name fds")
@pytest.mark.parametrize("count", [1, 9, 23])
def test_durable_mode_survives_a_simulated_power_loss(tmp_path, count):
    """A6 in the LevelDB manner: every file is cut back to the size it had at its last
    fsync (a file never synced loses everything); every acknowledged entry survives."""
    environment = dict(os.environ, PYTHONPATH=str(REPO))
    result = subprocess.run(
        [sys.executable, "-c", POWER_LOSS_CHILD, str(tmp_path), str(count)],
        check=False,
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == -signal.SIGKILL, result.stderr
    synced = json.loads(result.stdout)
    for path in tmp_path.rglob("*"):
        if path.is_file():
            os.truncate(path, min(synced.get(str(path), 0), path.stat().st_size))
    assert recovered(tmp_path, "file") == worker.reference(3, count)

"""The operation store under kill -9 (reliability A1 for structured logs): a writer whose
every operation is committed on return is killed at a random moment; the store then holds
exactly the acknowledged operations (or also the one in flight), and continues."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from klepto.logs import open_store, safe_load
from tests.faults import _op_worker as worker

pytestmark = pytest.mark.faults

REPO = Path(__file__).resolve().parents[2]
COUNT = 400
FULL = pytest.param(100, marks=[pytest.mark.full, pytest.mark.slow])


@pytest.mark.parametrize("durability", ["flush", "durable"])
@pytest.mark.parametrize("runs", [6, FULL])
def test_kill9_during_operations(tmp_path, runs, durability):
    """Each operation is committed on return (by default one sealed record): a kill -9
    never loses an acknowledged one and never leaves half of one."""
    failures, landed = [], 0
    environment = dict(os.environ, PYTHONPATH=str(REPO))
    for seed in range(runs):
        rng = random.Random(seed)
        path = tmp_path / f"s{seed}.oplog"
        command = [sys.executable, "-m", "tests.faults._op_worker", str(path), str(seed)]
        proc = subprocess.Popen(
            [*command, str(COUNT), durability], cwd=REPO, env=environment, stdout=subprocess.PIPE
        )
        lines, target = [], rng.randint(5, COUNT - 50)
        for raw in proc.stdout:
            lines.append(raw.decode().strip())
            if len(lines) >= target or lines[-1] == "END":
                break
        time.sleep(rng.uniform(0, 0.003))
        proc.send_signal(signal.SIGKILL)
        lines += proc.stdout.read().decode().splitlines()
        proc.wait()
        landed += "END" not in lines
        acked = sum(line.startswith("A ") for line in lines)
        state = safe_load(path)
        allowed = (worker.reference(seed, acked), worker.reference(seed, acked + 1))
        if state not in allowed:
            failures.append(f"seed {seed}: state differs after {acked} acknowledged operations")
            continue
        with open_store(path) as store:  # it continues from the recovered state
            store["losses"].append("after")
        if safe_load(path)["losses"][-1] != "after":
            failures.append(f"seed {seed}: the store did not continue")
    assert failures == []
    assert landed >= runs // 2

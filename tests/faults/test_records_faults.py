"""The record file under faults, with real processes (docs: reliability campaign A1, B1, B5,
B6, C3, C6, D1, D4).

Default runs are short; ``-m full`` runs the campaign's full counts. Every assertion is a
count (acknowledged commits, wrong records, violations), never a timing.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import json
import logging
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from klepto import _recordcreate, _recordwriter
from klepto.errors import CorruptRecordError, LockedError
from klepto.records import InvalidRecordFile, RecordFile, RecordFileLocked
from tests.faults._record_worker import Plan

pytestmark = pytest.mark.faults

ROOT = Path(__file__).resolve().parents[2]
FULL = pytest.mark.full


def worker(*args: object, stdin: int | None = None) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen(
        [sys.executable, "-m", "tests.faults._record_worker", *map(str, args)],
        cwd=ROOT,
        env=env,
        stdin=stdin,
        stdout=subprocess.PIPE,
        text=True,
    )


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else 0


# --- A1: kill -9 of a writer ---------------------------------------------------------------------

KILL_COUNT = 10_000


def kill_run(directory: Path, seed: int) -> str:
    """One writer killed after a random acknowledgement; returns what recovery looked like."""
    rnd = random.Random(seed)
    plan = Plan(seed, KILL_COUNT)
    durability = "durable" if seed % 4 == 0 else "flush"
    path = directory / f"kill-{seed}.krf"
    proc = worker("writer", path, seed, KILL_COUNT, durability)
    assert proc.stdout is not None
    target = rnd.randint(1, len(plan.boundaries))
    acked, acks = 0, 0
    for line in proc.stdout:
        if line.startswith("ack "):
            acked, acks = int(line.split()[1]), acks + 1
            if acks >= target:
                time.sleep(rnd.uniform(0, 0.003))
                proc.send_signal(signal.SIGKILL)
                break
    for line in proc.stdout:  # acknowledgements printed before the kill landed
        if line.startswith("ack "):
            acked = int(line.split()[1])
    proc.wait()
    proc.stdout.close()
    check_after_kill(path, plan, acked)
    return "complete" if acked == KILL_COUNT else "killed"


def check_after_kill(path: Path, plan: Plan, acked: int) -> None:
    with RecordFile(path) as reader:
        count = len(reader)
        assert count in (acked, plan.next_boundary(acked)), (count, acked)
        for i, record in enumerate(reader):
            assert record == plan.record(i), f"record {i} differs"
        with pytest.raises(IndexError):
            reader[count]
    with RecordFile(path, "a") as writer:
        assert len(writer) == count
        writer.extend(b"new %d" % i for i in range(10))
        writer.commit()
    with RecordFile(path) as reader:
        assert len(reader) == count + 10
        assert reader[-10:] == [b"new %d" % i for i in range(10)]
        assert reader[count - 1] == plan.record(count - 1) if count else True
        assert reader.verify().ok


@pytest.mark.parametrize("seed", range(10))
def test_kill9_writer(tmp_path, seed):
    kill_run(tmp_path, seed)


SEALED_COUNT = 3000


def sealed_kill_run(directory: Path, seed: int) -> str:
    """A writer committing every record on its own (sealed records; the big ones as full
    commits) is killed after a random acknowledgement: every acknowledged record is there
    byte for byte, at most the one in flight besides, nothing torn, and writing goes on."""
    rnd = random.Random(seed)
    plan = Plan(seed, SEALED_COUNT)
    durability = "durable" if seed % 4 == 0 else "flush"
    path = directory / f"sealed-{seed}.krf"
    proc = worker("sealer", path, seed, SEALED_COUNT, durability)
    assert proc.stdout is not None
    target = rnd.randint(1, SEALED_COUNT)
    acked = 0
    for line in proc.stdout:
        if line.startswith("ack "):
            acked = int(line.split()[1])
            if acked >= target:
                time.sleep(rnd.uniform(0, 0.002))
                proc.send_signal(signal.SIGKILL)
                break
    for line in proc.stdout:  # acknowledgements printed before the kill landed
        if line.startswith("ack "):
            acked = int(line.split()[1])
    proc.wait()
    proc.stdout.close()
    with RecordFile(path) as reader:
        count = len(reader)
        assert count in (acked, acked + 1), (count, acked)
        assert all(record == plan.record(i) for i, record in enumerate(reader))
    with RecordFile(path, "a") as writer:
        assert len(writer) == count
        writer.commit_record(b"after the kill")
    with RecordFile(path) as reader:
        assert len(reader) == count + 1 and reader[-1] == b"after the kill"
        assert reader.verify().ok
    return "complete" if acked == SEALED_COUNT else "killed"


@pytest.mark.parametrize("seed", range(8))
def test_kill9_sealed_writer(tmp_path, seed):
    """Per-record durability against kill -9: an acknowledged sealed commit is never lost."""
    sealed_kill_run(tmp_path, seed)


@FULL
@pytest.mark.slow
def test_kill9_sealed_writer_full_campaign(tmp_path):
    outcomes = Counter(sealed_kill_run(tmp_path, seed) for seed in range(2000, 2100))
    assert outcomes["killed"] >= 50


@FULL
@pytest.mark.slow
def test_kill9_writer_full_campaign(tmp_path):
    outcomes = Counter(kill_run(tmp_path, seed) for seed in range(1000, 1100))
    assert sum(outcomes.values()) == 100


# --- B1: truncation, bit flips, zeroed pages, appended garbage -----------------------------------

FAULTS = ("truncate", "flip", "zero4k", "garbage")


@pytest.fixture(scope="module")
def damaged_source(tmp_path_factory):
    """A file of 1500 plan records in commits of 1-50, metadata set at every commit."""
    plan = Plan(77, 1500)
    path = tmp_path_factory.mktemp("source") / "source.krf"
    with RecordFile(str(path), "a") as f:
        for boundary in plan.boundaries:
            for i in range(len(f), boundary):
                f.append(plan.record(i))
            f.set_metadata(b"count=%d" % boundary)
            f.commit()
    return plan, path.read_bytes()


def damage(data: bytes, fault: str, rnd: random.Random) -> bytes:
    if fault == "truncate":
        cut = rnd.randint(1, min(65536, len(data))) if rnd.random() < 0.5 else None
        return data[: len(data) - cut] if cut else data[: rnd.randrange(len(data))]
    if fault == "flip":
        pos = rnd.randrange(len(data))
        return data[:pos] + bytes([data[pos] ^ rnd.randint(1, 255)]) + data[pos + 1 :]
    if fault == "zero4k":
        page = rnd.randrange((len(data) + 4095) // 4096) * 4096
        return data[:page] + bytes(len(data[page : page + 4096])) + data[page + 4096 :]
    return data + os.urandom(rnd.randint(1024, 8192))


def classify(path: Path, plan: Plan, caplog) -> str:
    """intact / detected / prefix (a logged fall-back to an earlier commit) / WRONG / SILENT."""
    caplog.clear()
    try:
        with RecordFile(str(path)) as reader:
            count, verdict = len(reader), read_everything(reader, plan)
    except (CorruptRecordError, InvalidRecordFile):
        return "detected"
    if verdict == "WRONG" or count == plan.boundaries[-1]:
        return verdict
    warned = any(
        r.levelno >= logging.WARNING and r.name == "klepto.records" for r in caplog.records
    )
    return "prefix" if warned else "SILENT"


def read_everything(reader: RecordFile, plan: Plan) -> str:
    """WRONG if any record, the count or the metadata is wrong; else detected or intact."""
    count = len(reader)
    if count not in plan.boundary_set:
        return "WRONG"
    reads = [(reader.get_metadata, b"count=%d" % count if count else None)]
    try:  # the fast path: every record at once
        reads.append((lambda: list(reader), [plan.record(i) for i in range(count)]))
        verdict = check_reads(reads)
    except CorruptRecordError:  # find out record by record what is readable and what is not
        reads[1:] = [((lambda i=i: reader[i]), plan.record(i)) for i in range(count)]
        verdict = check_reads(reads)
    with contextlib.suppress(IndexError):
        reader[count]
        return "WRONG"
    return verdict


def check_reads(reads: list) -> str:
    detected = False
    for read, value in reads:
        try:
            if read() != value:
                return "WRONG"
        except CorruptRecordError:
            if len(reads) == 2 and value is reads[1][1]:
                raise  # the fast path failed: go record by record
            detected = True
    return "detected" if detected else "intact"


def writer_recovers(path: Path, plan: Plan) -> bool:
    """A writer opening the damaged file either refuses or continues from a commit boundary."""
    try:
        with RecordFile(str(path), "a") as writer:
            count = len(writer)
            if count not in plan.boundary_set:
                return False
            writer.append(b"after damage")
            writer.commit()
        with RecordFile(str(path)) as reader:
            return len(reader) == count + 1 and reader[-1] == b"after damage"
    except (CorruptRecordError, InvalidRecordFile):
        return True


def corruption_campaign(tmp_path, damaged_source, caplog, fault, trials, seed):
    plan, data = damaged_source
    rnd = random.Random(seed)
    outcomes: Counter = Counter()
    for trial in range(trials):
        path = tmp_path / f"{fault}-{trial}.krf"
        path.write_bytes(damage(data, fault, rnd))
        outcomes[classify(path, plan, caplog)] += 1
        assert writer_recovers(path, plan), (fault, trial)
        path.unlink()
        Path(f"{path}.lock").unlink(missing_ok=True)
    assert outcomes["WRONG"] == 0 and outcomes["SILENT"] == 0, outcomes
    if fault == "garbage":
        assert outcomes == {"intact": trials}, outcomes
    return outcomes


@pytest.mark.parametrize("fault", FAULTS)
def test_corruption(tmp_path, damaged_source, caplog, fault):
    corruption_campaign(tmp_path, damaged_source, caplog, fault, 50, FAULTS.index(fault))


@FULL
@pytest.mark.slow
@pytest.mark.parametrize("fault", FAULTS)
def test_corruption_full_campaign(tmp_path, damaged_source, caplog, fault):
    corruption_campaign(tmp_path, damaged_source, caplog, fault, 200, 5000 + len(fault))


# --- B6: many damaged opens in one process -------------------------------------------------------


def open_and_drop(path: Path, mode: str, rnd: random.Random) -> str:
    """Open (and read from) a damaged file, then drop the object without closing it."""
    try:
        opened = RecordFile(str(path), mode)
        if len(opened):
            opened[rnd.randrange(len(opened))]
    except (CorruptRecordError, InvalidRecordFile):
        return "refused"
    return "opened"


def test_thousand_damaged_opens_leak_nothing(tmp_path):
    plan = Plan(88, 400)
    source = tmp_path / "small.krf"
    with RecordFile(str(source), "a") as f:
        for boundary in plan.boundaries:
            f.extend(plan.record(i) for i in range(len(f), boundary))
            f.commit()
    data = source.read_bytes()
    rnd = random.Random(6)
    paths = [tmp_path / f"damaged-{k}.krf" for k in range(20)]
    gc.collect()
    before = fd_count()
    outcomes: Counter = Counter()
    for trial in range(1000):
        path = paths[trial % len(paths)]
        path.write_bytes(damage(data, FAULTS[trial % 3], rnd))
        outcomes[open_and_drop(path, "a" if trial % 2 else "r", rnd)] += 1
        if trial % 10 == 0:
            gc.collect()  # and otherwise let the collector run on its own
    gc.collect()
    assert fd_count() <= before + 2
    assert not _recordcreate._writers  # no writer claim outlives its object
    for path in paths:
        path.write_bytes(data)
        with RecordFile(str(path), "a") as writer:
            assert len(writer) == plan.boundaries[-1]
    assert sum(outcomes.values()) == 1000


# --- B5: a reader on a stopped writer's torn tail ------------------------------------------------


def stopped_writer_campaign(tmp_path, stops, seed):
    plan = Plan(seed, 200_000)
    path = tmp_path / "stopped.krf"
    proc = worker("writer", path, seed, 200_000, "flush")
    assert proc.stdout is not None
    assert proc.stdout.readline().startswith("ack ")
    rnd = random.Random(seed)
    seen = 0
    try:
        for _ in range(stops):
            time.sleep(rnd.uniform(0, 0.01))
            proc.send_signal(signal.SIGSTOP)
            try:
                with RecordFile(str(path)) as reader:
                    count = len(reader)
                    assert count in plan.boundary_set and count >= seen
                    for i in {seen, (seen + count) // 2, count - 1} - {-1}:
                        if i < count:
                            assert reader[i] == plan.record(i)
                    seen = count
            finally:
                proc.send_signal(signal.SIGCONT)
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    with RecordFile(str(path)) as reader:
        assert len(reader) >= seen


def test_reader_on_stopped_writer(tmp_path):
    stopped_writer_campaign(tmp_path, 20, 11)


@FULL
@pytest.mark.slow
def test_reader_on_stopped_writer_full_campaign(tmp_path):
    stopped_writer_campaign(tmp_path, 200, 12)


# --- C3: reader processes refreshing during commits ----------------------------------------------


def readers_campaign(tmp_path, readers, count, seed):
    path = tmp_path / "shared.krf"
    stop = tmp_path / "stop"
    RecordFile(str(path), "a").close()
    procs = [worker("reader", path, seed, count, stop) for _ in range(readers)]
    writer = worker("writer", path, seed, count, "flush")
    assert writer.stdout is not None
    lines = writer.stdout.read().split()
    writer.wait()
    writer.stdout.close()
    assert lines[-1] == "done"
    stop.write_text("stop")
    reports = []
    for proc in procs:
        assert proc.stdout is not None
        reports.append(json.loads(proc.stdout.read()))
        proc.wait()
        proc.stdout.close()
    for report in reports:
        assert report["violations"] == [], report
        assert report["count"] == count
    return reports


def test_reader_processes_during_commits(tmp_path):
    readers_campaign(tmp_path, 3, 20_000, 21)


@FULL
@pytest.mark.slow
def test_reader_processes_during_commits_full(tmp_path):
    readers_campaign(tmp_path, 8, 60_000, 22)


def test_threads_share_one_reader_while_it_refreshes(tmp_path):
    plan = Plan(31, 10_000)
    path = str(tmp_path / "threads.krf")
    writer = RecordFile(path, "a")
    reader = RecordFile(path)
    stop = threading.Event()
    errors: list[str] = []

    def write():
        for boundary in plan.boundaries:
            for i in range(len(writer), boundary):
                writer.append(plan.record(i))
            writer.commit()
        stop.set()

    def refresh():
        while not stop.is_set():
            reader.refresh()

    def read(seed):
        rnd = random.Random(seed)
        while not stop.is_set() or rnd.random() < 0.999:
            count = len(reader)
            if count:
                i = rnd.randrange(count)
                if reader[i] != plan.record(i):
                    errors.append(f"record {i}")
            if stop.is_set():
                break

    threads = [threading.Thread(target=write), threading.Thread(target=refresh)]
    threads += [threading.Thread(target=read, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    reader.refresh()
    assert errors == [] and len(reader) == 10_000
    writer.close()
    reader.close()


# --- C3/C6: writer exclusion, lock release on kill -----------------------------------------------


def hold_and_kill(tmp_path, rounds):
    path = tmp_path / "held.krf"
    for _ in range(rounds):
        holder = worker("hold", path, stdin=subprocess.PIPE)
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        for _ in range(10):
            with pytest.raises(RecordFileLocked) as caught:
                RecordFile(str(path), "a")
            assert isinstance(caught.value, LockedError) and "another process" in str(caught.value)
        with RecordFile(str(path)) as reader:  # readers are not blocked
            len(reader)
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        holder.stdout.close()
        assert holder.stdin is not None
        holder.stdin.close()
        with RecordFile(str(path), "a", lock_timeout=1.0) as writer:  # released by the OS
            writer.append(b"x")
            writer.commit()


def test_second_writer_refused_and_lock_released_on_kill(tmp_path):
    hold_and_kill(tmp_path, 3)


@FULL
def test_lock_release_on_kill_full(tmp_path):
    hold_and_kill(tmp_path, 20)


# --- D4: I/O errors injected into commits --------------------------------------------------------


class Injector:
    """Makes the ``n``-th call of a function raise ``OSError(errno)``."""

    def __init__(self, real, n: int, code: int = errno.EIO) -> None:
        self.real, self.n, self.code, self.calls = real, n, code, 0

    def __call__(self, *args):
        self.calls += 1
        if self.calls == self.n:
            raise OSError(self.code, os.strerror(self.code))
        return self.real(*args)


@pytest.mark.parametrize("target", ["pwrite", "sync", "ftruncate"])
@pytest.mark.parametrize("durability", ["flush", "durable"])
def test_io_errors_during_commit(tmp_path, monkeypatch, target, durability):
    before = [b"before %d" % i for i in range(300)]
    batch = [os.urandom(50) + b"batch %d" % i for i in range(3000)]
    owner = {"pwrite": os, "sync": _recordwriter, "ftruncate": os}[target]
    real = getattr(owner, target)
    for n in range(1, 200):
        path = str(tmp_path / f"io-{n}.krf")
        f = RecordFile(path, "a", durability=durability)
        f.extend(before)
        f.commit()
        injector = Injector(real, n)
        monkeypatch.setattr(owner, target, injector)
        failed = False
        try:
            f.extend(batch)
            f.set_metadata(b"post")
            f.commit()
        except OSError as exc:
            assert exc.errno == errno.EIO
            failed = True
        monkeypatch.setattr(owner, target, real)
        if not f.closed:
            assert len(f) in (300, 3300)
            f.append(b"next")
            f.commit()
        f.close()
        with RecordFile(path) as reader:
            records = list(reader)
            assert records[:300] == before
            rest = records[300:]
            assert rest in ([], batch, [b"next"], [*batch, b"next"])
            assert reader.verify().ok
        with RecordFile(path, "a") as again:
            again.append(b"works")
            again.commit()
        if not failed:
            break
    else:
        pytest.fail("the injected error never stopped firing")


# --- D1: a full disk -----------------------------------------------------------------------------


@pytest.fixture
def tiny_disk(tmp_path):
    mount = tmp_path / "tiny"
    mount.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
        check=False,
        capture_output=True,
    )
    if result.returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.parametrize("batch", [1, 37, 500])
def test_disk_full(tiny_disk, batch):
    ballast = tiny_disk / "ballast"
    ballast.write_bytes(b"x" * (512 << 10))
    path = str(tiny_disk / "full.krf")
    acked: list[bytes] = []
    with RecordFile(path, "a", compression=None) as f:
        with pytest.raises(OSError) as caught:
            while True:
                f.extend(os.urandom(200) for _ in range(batch))
                f.commit()
                acked += [f[k] for k in range(len(acked), len(f))]
        assert caught.value.errno == errno.ENOSPC
        assert len(f) == len(acked)  # the failed commit's records are gone, the rest kept
        ballast.unlink()  # free some space: the same writer works again
        f.extend([b"again"])
        f.commit()
    assert [n for n in os.listdir(tiny_disk) if n.startswith(".klepto-tmp")] == []
    with RecordFile(path) as reader:
        assert list(reader) == [*acked, b"again"] and reader.verify().ok

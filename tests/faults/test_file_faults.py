"""file_archive-specific faults (the items every store shares are in test_archive_faults.py
and test_store_faults.py): a full disk with compaction freeing the space again (D1),
injected I/O errors at every system call of a set, an update and a compaction (D4), and a
simulated power loss in durable mode, in process (A6, LevelDB style).

Every check counts outcomes; none depends on timing.
"""

from __future__ import annotations

import errno
import os
import random

import pytest

from klepto.archives import file_archive
from tests._io_inject import Inject
from tests.faults._harness import small_tmpfs

pytestmark = pytest.mark.faults


@pytest.mark.parametrize("value_size", [1000, 7000, 40_000, 150_000, 600_000])
def test_disk_full_raises_and_keeps_data(campaign, value_size):
    """D1: the write that hits ENOSPC raises; acked data survives; once space is freed,
    writes and compaction work again."""
    with small_tmpfs() as mount, campaign.run("D1", "file-compact"):
        ballast = mount / "ballast"
        ballast.write_bytes(bytes(800_000))
        archive = file_archive(str(mount / "memo.pkl"), cached=False)
        try:
            written = {}
            with pytest.raises(OSError) as caught:
                for i in range(10_000):
                    archive[i] = os.urandom(value_size)
                    written[i] = archive[i]
            assert caught.value.errno == errno.ENOSPC
            assert archive.__asdict__() == written
            assert file_archive(str(mount / "memo.pkl"), cached=False).__asdict__() == written
            assert not [n for n in os.listdir(mount) if n.startswith(".klepto-tmp")]
            ballast.unlink()  # space is freed
            archive["after"] = written["after"] = b"x" * min(value_size, 100_000)
            with archive.transaction():
                for key in list(written)[: len(written) * 9 // 10]:
                    del archive[key]  # the file only grows (a record per delete) ...
                    del written[key]
            archive.compact()  # ... until compaction copies what is left into a new file
            assert os.path.getsize(mount / "memo.pkl") < 1_000_000
            assert file_archive(str(mount / "memo.pkl"), cached=False).__asdict__() == written
        finally:
            archive.close()


def _run(archive, operation: str) -> None:
    if operation == "set":
        archive["x"] = 1
    elif operation == "update":
        archive.update({i: -i for i in range(30, 60)})
    else:
        archive.compact()


@pytest.mark.parametrize("operation", ["set", "update", "compact"])
def test_io_errors_propagate_and_leave_a_consistent_archive(
    tmp_path, monkeypatch, campaign, operation
):
    """D4: an I/O error at each system call in turn: the operation raises it (or, where
    the failed call only saves the index, completes without it), the archive is as before
    or as after, and the next write works."""
    for n in range(1, 200):
        path = str(tmp_path / f"{operation}{n}.pkl")
        archive = file_archive(path, cached=False, durable=True)
        archive.update({i: i for i in range(20)})
        del archive[0]
        before = archive.__asdict__()
        after = {**before, **({"x": 1} if operation == "set" else {})}
        if operation == "update":
            after.update({i: -i for i in range(30, 60)})
        with monkeypatch.context() as patch:
            injected = Inject(patch, n)
            try:
                _run(archive, operation)
                raised = False
            except OSError as exc:
                assert exc.errno == errno.EIO
                raised = True
        reopened = file_archive(path, cached=False).__asdict__()
        assert reopened == after if not raised else reopened in (before, after), n
        assert archive.__asdict__() == reopened
        archive["next"] = n
        assert file_archive(path, cached=False)["next"] == n
        archive.close()
        if injected.count < n:
            campaign.record("D4", "file", n, 0)
            return  # a clean run: every call has failed once
    pytest.fail("the operation never completed without an injected error")


def test_power_loss_keeps_every_durable_commit(tmp_path, monkeypatch, campaign):
    """A6 (LevelDB style): cut the file back to what was fsynced; acked commits survive."""
    synced: dict[int, int] = {}
    real_sync = os.fdatasync

    def tracking_sync(fd):
        real_sync(fd)
        info = os.fstat(fd)
        synced[info.st_ino] = info.st_size

    monkeypatch.setattr(os, "fdatasync", tracking_sync)
    path = tmp_path / "durable.pkl"
    rng = random.Random(5)
    for trial in range(20):
        archive = file_archive(str(path), cached=False, durable=True)
        expected = archive.__asdict__()
        for i in range(rng.randint(1, 30)):
            key = f"{trial}-{i % 7}"
            archive[key] = expected[key] = "v" * rng.randint(1, 3000)
        archive.close()
        inode = os.stat(path).st_ino
        os.truncate(path, synced[inode])  # the power cut: what was never fsynced is gone
        with campaign.run("A6", "file-in-process"):
            assert file_archive(str(path), cached=False).__asdict__() == expected

"""README's showcase: ``klepto demo`` persists to a directory and the rerun computes nothing."""

from __future__ import annotations

import re
import subprocess
import sys


def test_second_process_is_served_from_the_archive(tmp_path):
    archive = tmp_path / "demo-archive"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "klepto",
            "demo",
            "--calls",
            "8",
            "--delay",
            "0.01",
            "--dir",
            str(archive),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    lines = done.stdout.splitlines()
    first = next(line for line in lines if line.startswith("first run"))
    second = next(line for line in lines if line.startswith("second run"))
    assert re.search(r"hits=4 misses=4 loads=0", first), first
    assert re.search(r"hits=4 misses=0 loads=4", second), second
    assert "the second run computed 0 of 8 calls" in done.stdout
    # the results really are on disk, one entry per distinct call
    from klepto.archives import dir_archive

    stored = dir_archive(str(archive), cached=False)
    assert len(stored) == 4

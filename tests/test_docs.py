"""Every example in README.rst and docs/*.rst runs (doctest), in a scratch directory."""

from __future__ import annotations

import doctest
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.rst", *sorted((ROOT / "docs").glob("*.rst"))]
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: p.name)
def test_examples_run(document, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    failures, _ = doctest.testfile(
        str(document), module_relative=False, optionflags=FLAGS, verbose=False
    )
    assert failures == 0, f"{failures} failing example(s) in {document.name}"


def test_sphinx_builds_without_warnings(tmp_path):
    """The documentation builds with warnings as errors (``-W``), as CI requires."""
    pytest.importorskip("sphinx")
    import subprocess
    import sys

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-q",
            "-W",
            "-b",
            "html",
            str(ROOT / "docs"),
            str(tmp_path / "html"),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr

"""Static typing: ``mypy --strict klepto`` is clean, and typed use sees wrapped signatures."""

from __future__ import annotations

import pathlib
import re
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
USAGE = ROOT / "tests" / "typing" / "usage.py"

pytestmark = pytest.mark.skipif(
    shutil.which("mypy") is None
    and subprocess.run(
        [sys.executable, "-c", "import mypy"], check=False, capture_output=True
    ).returncode
    != 0,
    reason="mypy is not installed (pip install 'klepto[test]')",
)


@pytest.fixture(scope="module")
def mypy_output() -> list[str]:
    """One ``mypy --strict`` run over the package and the usage file (with the shared cache)."""
    command = [sys.executable, "-m", "mypy", "--strict", "klepto", str(USAGE.relative_to(ROOT))]
    result = subprocess.run(
        command, cwd=ROOT, check=False, capture_output=True, text=True, timeout=600
    )
    assert "error: " in result.stdout or result.returncode == 0, result.stdout + result.stderr
    return result.stdout.splitlines()


def test_the_package_is_strict_clean(mypy_output):
    problems = [line for line in mypy_output if line.startswith("klepto") and ": error:" in line]
    assert problems == []


def _reveals(lines: list[str]) -> dict[int, str]:
    found = {}
    for line in lines:
        match = re.match(r".*usage\.py:(\d+): note: Revealed type is \"(.*)\"$", line)
        if match:
            found[int(match.group(1))] = match.group(2)
    return found


def _line(text: str) -> int:
    return USAGE.read_text().splitlines().index(text) + 1


def test_the_wrapped_signature_is_visible(mypy_output):
    reveals = _reveals(mypy_output)
    # (mypy prints builtins with or without their module, depending on its version)
    reveals = {n: text.replace("builtins.", "") for n, text in reveals.items()}
    memoized = reveals[_line("reveal_type(model)  # noqa: F821")]
    assert memoized == "klepto._typing.Memoized[[x: int, y: float =], str]"
    assert reveals[_line("reveal_type(model(1))  # noqa: F821")] == "str"
    assert reveals[_line("reveal_type(model.info())  # noqa: F821")].endswith("CacheInfo]")
    assert reveals[_line("reveal_type(model.expire())  # noqa: F821")] == "int"
    # an ``async def`` keeps being one: calling it gives a coroutine of the result
    assert reveals[_line('    reveal_type(await fetch("u"))  # noqa: F821')] == "bytes"
    assert reveals[_line("reveal_type(Grid().cell(1, 2))  # noqa: F821")] == "float"


def test_wrong_calls_are_errors_and_nothing_else_is(mypy_output):
    expected = {
        number
        for number, text in enumerate(USAGE.read_text().splitlines(), 1)
        if text.endswith("# expect-error")
    }
    errors = {
        int(match.group(1))
        for line in mypy_output
        if (match := re.match(r".*usage\.py:(\d+): error:", line))
    }
    assert errors == expected

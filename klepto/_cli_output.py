"""What the ``klepto`` command shows: keys parsed from the command line, text and JSON output,
and the progress bar of long operations (on stderr, only on a terminal)."""

from __future__ import annotations

import ast
import json
import sys
import time
from typing import IO, Any

from klepto._export import jsonable

__all__ = ["ProgressBar", "emit_json", "parse_key", "show_mapping"]


def parse_key(text: str, raw: bool = False) -> Any:
    """A key typed on the command line: a Python literal when it is one, else the text.

    ``1`` is the int 1, ``'1'`` (quotes included) the str ``'1'``, ``(1, 2)`` a tuple,
    ``results`` the str ``'results'``; ``raw=True`` always takes the text as it is.
    """
    if raw:
        return text
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


def emit_json(document: Any, stream: IO[str] | None = None) -> None:
    """Print ``document`` as one JSON document (non-JSON values tagged, see klepto._export)."""
    out = sys.stdout if stream is None else stream
    out.write(json.dumps(jsonable(document), indent=2, ensure_ascii=False) + "\n")


def _scalar(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={v!r}" for k, v in value.items()) or "{}"
    return str(value) if value is not None else "-"


def show_mapping(details: dict[str, Any], stream: IO[str] | None = None) -> None:
    """Print ``details`` as aligned ``name: value`` lines (nested dicts indented)."""
    out = sys.stdout if stream is None else stream
    width = max((len(name) for name in details), default=0) + 1
    for name, value in details.items():
        label = f"{name.replace('_', ' ')}:"
        if isinstance(value, dict) and value:
            out.write(f"{label}\n")
            inner = max(len(k) for k in value) + 1
            for key, item in value.items():
                out.write(f"  {key + ':':<{inner}} {item!r}\n")
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            out.write(f"{label}\n")
            for item in value:
                out.write(f"  {_scalar(item)}\n")
        else:
            out.write(f"{label:<{width + 1}} {_scalar(value)}\n")


class ProgressBar:
    """``bar(done, total)`` redraws a one-line bar on ``stream`` (at most ~10 times a second).

    Enabled only when ``stream`` is a terminal and the user did not ask for quiet: pipes,
    files and CI logs never see it.
    """

    WIDTH = 30

    def __init__(self, label: str, stream: IO[str] | None = None, quiet: bool = False) -> None:
        self.stream = sys.stderr if stream is None else stream
        isatty = getattr(self.stream, "isatty", None)
        self.enabled = not quiet and callable(isatty) and bool(isatty())
        self.label = label
        self._last = 0.0
        self._drawn = False

    def __call__(self, done: int, total: int | None) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        finished = total is not None and done >= total
        if not finished and now - self._last < 0.1:
            return
        self._last = now
        self.stream.write("\r" + self.render(done, total))
        self.stream.flush()
        self._drawn = True

    def render(self, done: int, total: int | None) -> str:
        if not total:
            return f"{self.label} {done}"
        fraction = min(done / total, 1.0)
        filled = int(fraction * self.WIDTH)
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        return f"{self.label} [{bar}] {fraction:4.0%} {done}/{total}"

    def close(self) -> None:
        """End the bar's line (if one was drawn)."""
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

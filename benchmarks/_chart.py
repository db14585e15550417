"""The ratio chart of a benchmark run: ``python -m benchmarks --chart PATH`` (a PNG).

One horizontal bar per compared figure: klepto's time (or size) divided by its peer's, on a
log scale, so a bar left of 1 means klepto is faster; a tick marks the target ratio where
one is set. Needs matplotlib (drawn without a display); without it the chart is skipped
with a note and the run goes on.
"""

from __future__ import annotations

import importlib.util

from benchmarks._harness import Result, ratio

__all__ = ["write_chart"]


def _rows(results: list[Result]) -> list[tuple[str, float, float | None]]:
    by_key = {(r.workload, r.metric, r.impl): r for r in results}
    rows = []
    for result in results:
        value = ratio(result, by_key)
        if value is None or value <= 0:
            continue
        label = f"{result.workload} {result.metric}: {result.impl} vs {result.peer}"
        rows.append((label, value, result.target))
    return rows


def write_chart(results: list[Result], path: str) -> bool:
    """Draw the ratios of ``results`` into the PNG ``path``; False if there is nothing to draw
    or matplotlib is missing."""
    rows = _rows(results)
    if not rows or importlib.util.find_spec("matplotlib") is None:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    height = 0.32 * len(rows) + 1.2
    figure, axes = plt.subplots(figsize=(10, height))
    positions = list(range(len(rows)))[::-1]
    ratios = [value for _, value, _ in rows]
    colors = ["#2a7ab0" if value <= 1 else "#c8553d" for value in ratios]
    axes.barh(positions, ratios, color=colors, height=0.6)
    for y, (_, _, target) in zip(positions, rows):
        if target is not None:
            axes.plot([target, target], [y - 0.35, y + 0.35], color="black", linewidth=1.5)
    axes.axvline(1.0, color="grey", linewidth=0.8, linestyle="--")
    axes.set_xscale("log")
    axes.set_yticks(positions)
    axes.set_yticklabels([label for label, _, _ in rows], fontsize=7)
    axes.set_xlabel("klepto / peer (log scale; < 1: klepto better; black tick: target)")
    axes.set_title("klepto against its peers")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True

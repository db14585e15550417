"""The fault campaign's bookkeeping: which item of docs/reliability each test proves on which
store, how many runs it made and how many failed; a summary table at the end of the run.

Tests built on the shared harness record exact counts with the ``campaign`` fixture
(``campaign.record("A2", "file", runs, failures)``). Tests written before the harness are
mapped here by name (:data:`CATALOG`): each counts its ``runs`` parameter (or 1) as runs and
all of them as failed if it failed. ``KLEPTO_CAMPAIGN_TABLE=PATH`` also writes the table
as reStructuredText to PATH (what docs/reliability.rst shows).
"""

from __future__ import annotations

import json
import os
import re
from collections import defaultdict

import pytest

_PROPERTY = "klepto-campaign"

# (regular expression on the node id, item, store, runs per test: an int, or None for the
# test's numeric parameter); the first match wins.
CATALOG = [
    (r"test_records_faults\.py::test_kill9_writer_full", "A1", "record", 100),
    (r"test_records_faults\.py::test_kill9_writer", "A1", "record", 1),
    (r"test_records_faults\.py::test_corruption_full", "B1", "record", 200),
    (r"test_records_faults\.py::test_corruption", "B1", "record", 50),
    (r"test_records_faults\.py::test_thousand_damaged", "B6", "record", 1000),
    (r"test_records_faults\.py::test_reader_on_stopped_writer_full", "B5", "record", 200),
    (r"test_records_faults\.py::test_reader_on_stopped", "B5", "record", 20),
    (r"test_records_faults\.py::test_reader_processes", "C3", "record", 1),
    (r"test_records_faults\.py::test_threads_share", "C3", "record", 1),
    (r"test_records_faults\.py::test_lock_release_on_kill_full", "C6", "record", 20),
    (r"test_records_faults\.py::test_second_writer", "C6", "record", 3),
    (r"test_records_faults\.py::test_io_errors", "D4", "record", 1),
    (r"test_records_faults\.py::test_disk_full", "D1", "record", 1),
    (r"test_checkpoint_faults\.py::test_kill9", "A4", "checkpoint", None),
    (r"test_checkpoint_faults\.py::test_damaged", "B4", "checkpoint", 1),
    (r"test_branches_faults\.py::test_kill_during.*\[(?:\d+-)?(dir|sql)", "A5", "branches-{0}", 1),
    (r"test_branches_faults\.py::test_(?:two|compare).*\[(dir|sql)", "C1", "branches-{0}", 1),
    (r"test_file_corruption\.py::test_damage", "B2", "file", None),
    (r"test_file_corruption\.py::test_many_damaged", "B6", "file", None),
    (r"test_dir_corruption\.py::test_damage", "B2", "dir", None),
    (r"test_sql_safety\.py::test_damage_campaign_full", "B3", "sqlite", 1),
    (r"test_sql_safety\.py::test_damage", "B3", "sqlite", 1),
    (r"test_sql_safety\.py::test_(?:hostile|failed_statement)", "E2", "sqlite", 1),
    (r"test_sql_safety\.py::test_planted_pickle", "E4", "sqlite", 1),
    (r"test_dir_security\.py::test_hostile_keys", "E1", "dir", 1),
    (r"test_dir_security\.py::test_forged_entry", "E4", "dir", 1),
    (r"test_dir_security\.py::test_(?:temp_name|planted_settings|pop_of)", "E5", "dir", 1),
    (r"test_dir_security\.py::test_(?:foreign|entry_moved)", "E6", "dir", 1),
    (r"test_decorators\.py::test_(?:e3_|unhashable_arguments)", "E3", "memo", 1),
]


class Campaign:
    """Recorder handed to a test: counts go into the test report's user properties."""

    def __init__(self, node: pytest.Item) -> None:
        self._node = node

    def record(self, item: str, store: str, runs: int, failures: int | list | dict) -> None:
        """``runs`` made of ``item`` on ``store``, ``failures`` of them failed (a count, or
        the list/dict of problems found, whose length is the count)."""
        failed = failures if isinstance(failures, int) else len(failures)
        entry = json.dumps({"item": item, "store": store, "runs": runs, "failures": failed})
        self._node.user_properties.append((_PROPERTY, entry))

    def run(self, item: str, store: str) -> _OneRun:
        """``with campaign.run(item, store):`` one run, failed if the block raises."""
        return _OneRun(self, item, store)


class _OneRun:
    def __init__(self, campaign: Campaign, item: str, store: str) -> None:
        self._args = (campaign, item, store)

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, exc, traceback) -> bool:
        campaign, item, store = self._args
        if kind is None or not issubclass(kind, pytest.skip.Exception):
            campaign.record(item, store, 1, 0 if kind is None else 1)
        return False  # the error, if any, still fails the test


@pytest.fixture
def campaign(request) -> Campaign:
    return Campaign(request.node)


def _catalogued(nodeid: str, failed: bool) -> list[dict]:
    for pattern, item, store, runs in CATALOG:
        match = re.search(pattern, nodeid)
        if match:
            if runs is None:  # the numeric parameter: [200], [200-default], [default-200]
                found = re.search(r"[\[-](\d+)[\]-]", nodeid)
                runs = int(found.group(1)) if found else 1
            name = store.format(*match.groups())
            return [{"item": item, "store": name, "runs": runs, "failures": runs if failed else 0}]
    return []


def _rows(reports) -> dict[tuple[str, str], list[int]]:
    table: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for report in reports:
        if report.when != "call" or report.skipped:
            continue
        entries = [json.loads(v) for k, v in report.user_properties if k == _PROPERTY]
        if not entries:
            entries = _catalogued(report.nodeid, report.failed)
        elif report.failed and not any(e["failures"] for e in entries):
            entries[-1]["failures"] = max(1, entries[-1]["failures"])  # failed after recording
        for entry in entries:
            row = table[(entry["item"], entry["store"])]
            row[0] += entry["runs"]
            row[1] += entry["failures"]
    return table


def _sort_key(key: tuple[str, str]) -> tuple:
    item, store = key
    return (item[0], int(item[1:]) if item[1:].isdigit() else 0, store)


def format_table(table: dict[tuple[str, str], list[int]]) -> list[str]:
    lines = [f"{'item':<6}{'store':<22}{'runs':>8}{'failures':>10}"]
    for key in sorted(table, key=_sort_key):
        runs, failures = table[key]
        lines.append(f"{key[0]:<6}{key[1]:<22}{runs:>8}{failures:>10}")
    return lines


def format_rst(table: dict[tuple[str, str], list[int]]) -> str:
    rows = [("item", "store", "runs", "failures")]
    rows += [(k[0], k[1], str(table[k][0]), str(table[k][1])) for k in sorted(table, key=_sort_key)]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    rule = "  ".join("=" * w for w in widths)
    body = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join([rule, body[0], rule, *body[1:], rule]) + "\n"


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    reports = [r for key in ("passed", "failed") for r in terminalreporter.stats.get(key, [])]
    table = _rows(reports)
    if not table:
        return
    terminalreporter.section("fault campaign: runs and failures per item and store")
    for line in format_table(table):
        terminalreporter.write_line(line)
    target = os.environ.get("KLEPTO_CAMPAIGN_TABLE")
    if target:
        with open(target, "w", encoding="utf-8") as handle:
            handle.write(format_rst(table))

"""``klepto salvage SRC DST``: the recovery mode of record files (and the stores kept in one:
file archives, operation stores, checkpoint logs) -- copy the longest intact prefix of
whole commits of a damaged file into a new one and say what was dropped.

Exit status: 0 nothing was damaged, 1 something was dropped (the copy holds the rest).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from klepto._cli_output import emit_json

__all__ = ["add_parser", "salvage"]


def add_parser(commands: argparse._SubParsersAction[Any], common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "salvage",
        parents=[common],
        help="copy the intact commits of a damaged record file into a new file",
    )
    parser.add_argument("location", metavar="SRC", help="the damaged record file")
    parser.add_argument("destination", metavar="DST", help="the new file (must not exist)")
    parser.add_argument("--durable", action="store_true", help="fsync the new file")
    parser.set_defaults(handler=salvage)


def salvage(args: argparse.Namespace) -> int:
    from klepto.records import RecordFile

    durability = "durable" if args.durable else "flush"
    report = RecordFile.salvage(args.location, args.destination, durability=durability)
    if args.json:
        emit_json(
            {
                "commits": report.commits,
                "records": report.records,
                "dropped_bytes": report.dropped_bytes,
                "dropped_records": report.dropped_records,
                "problem": list(report.problem) if report.problem else None,
            }
        )
    elif not args.quiet or not report.complete:
        sys.stdout.write(f"{report}\n")
    return 0 if report.complete else 1

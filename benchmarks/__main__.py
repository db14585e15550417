"""Run klepto's benchmarks against the peers: ``python -m benchmarks [--quick] [W1 W2 ...]``.

Peers are installed with ``pip install -e '.[bench]'``. A peer that is missing is reported
and skipped; klepto's own figures are still printed.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time

from benchmarks._harness import report
from benchmarks._scratch import delete_scratch

WORKLOADS = {
    "W1": "benchmarks.w1_hits",
    "W2": "benchmarks.w2_misses",
    "W3": "benchmarks.w3_archives",
    "W4": "benchmarks.w4_memo",
    "W5": "benchmarks.w5_writers",
    "W6": "benchmarks.w6_records",
    "W7": "benchmarks.w7_oplog",
    "W8": "benchmarks.w8_durability",
    "W9": "benchmarks.w9_shared",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument(
        "workloads", nargs="*", help=f"subset to run (default: all of {', '.join(WORKLOADS)})"
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, under two minutes")
    parser.add_argument("--no-json", action="store_true", help="omit the JSON lines")
    parser.add_argument("--chart", metavar="PATH", help="also draw the ratios as a PNG")
    args = parser.parse_args(argv)
    chosen = [w.upper() for w in args.workloads] or list(WORKLOADS)
    unknown = [w for w in chosen if w not in WORKLOADS]
    if unknown:
        parser.error(f"unknown workload(s): {', '.join(unknown)}")
    results = []
    try:
        for name in chosen:
            module = importlib.import_module(WORKLOADS[name])
            started = time.perf_counter()
            print(f"# {name}: {module.TITLE}", flush=True)
            results.extend(module.run(quick=args.quick))
            print(f"#   done in {time.perf_counter() - started:.1f} s", flush=True)
    finally:
        delete_scratch()  # only now: a deletion slows the next workload's file creation
    missed = report(results, emit_json=not args.no_json)
    if args.chart:
        from benchmarks._chart import write_chart

        drawn = write_chart(results, args.chart)
        print(f"# chart: {args.chart}" if drawn else "# chart skipped (needs matplotlib)")
    print(f"# {missed} target(s) missed")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())

"""The ``klepto`` command (also ``python -m klepto``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from klepto import __version__


def _demo(args: argparse.Namespace) -> int:
    from klepto._demo import RunReport, run_demo

    def show(report: RunReport) -> None:
        print(
            f"{report.label:<40} {report.seconds:7.3f} s   "
            f"hits={report.hits} misses={report.misses} loads={report.loads}"
        )

    print(
        f"klepto {__version__} demo: a slow function ({args.delay} s per call), "
        f"{args.calls} calls, memoized to an archive"
    )
    first, second = run_demo(ncalls=args.calls, delay=args.delay, progress=show)
    saved = first.seconds - second.seconds
    print(
        f"time saved by the archive: {saved:.3f} s "
        f"({first.seconds / max(second.seconds, 1e-9):.0f}x faster)"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="klepto", description=__doc__)
    parser.add_argument("--version", action="version", version=f"klepto {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run the showcase: a slow function memoized twice")
    demo.add_argument("--calls", type=int, default=20, help="calls per run (default 20)")
    demo.add_argument("--delay", type=float, default=0.05, help="seconds per computation")
    demo.set_defaults(handler=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())

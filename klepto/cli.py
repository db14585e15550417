"""The ``klepto`` command (also ``python -m klepto``): inspect, check and move stored data.

Works on any klepto store -- file, directory, SQL and HDF archives, record files,
operation stores, checkpoints, branching logs -- whose kind it reads from the store itself (see
:mod:`klepto.stores`). Keys on the command line are Python literals when they parse as one
(``1``, ``'1'``, ``(1, 2)``), otherwise plain strings (``--raw-key`` takes them as typed).

Exit status: 0 ok; 1 verification failed, or the key or location was not found; 2 usage
error (bad arguments, an operation the store's kind does not have, a migration of pickles
without ``--trust``); 3 any other error. Errors are one line on stderr (``--debug`` adds
the traceback). Read-only commands (info, ls, get, verify, export, tail, follow) never take
a store's write lock; ``salvage`` only reads its source.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Sequence

from klepto import __version__, _cli_salvage

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_ERROR = 0, 1, 2, 3


def _demo(args: argparse.Namespace) -> int:
    import tempfile

    from klepto._demo import RunReport, run_demo

    def show(report: RunReport) -> None:
        print(
            f"{report.label:<44} {report.seconds:7.3f} s   "
            f"hits={report.hits} misses={report.misses} loads={report.loads}"
        )

    location = args.dir or tempfile.mkdtemp(prefix="klepto-demo-")
    print(
        f"klepto {__version__} demo: a slow function ({args.delay} s per call), "
        f"{args.calls} calls per run, memoized to the directory archive {location}"
    )
    first, second = run_demo(location, ncalls=args.calls, delay=args.delay, progress=show)
    saved = first.seconds - second.seconds
    print(
        f"time saved by the archive: {saved:.3f} s "
        f"({first.seconds / max(second.seconds, 1e-9):.0f}x faster); "
        f"the second run computed {second.misses} of {args.calls} calls"
    )
    print(f"inspect the archive with: klepto ls {location}")
    return 0


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print JSON")
    common.add_argument("--quiet", "-q", action="store_true", help="no progress bar or notes")
    common.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    return common


def _located(common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    located = argparse.ArgumentParser(add_help=False, parents=[common])
    located.add_argument("location", help="path, SQL URL (?table=NAME), optional #log=NS")
    located.add_argument("--kind", help="treat the store as this kind (skip detection)")
    located.add_argument("--branch", type=int, help="branch of a branching log (default 0)")
    return located


def _keyed(located: argparse.ArgumentParser) -> argparse.ArgumentParser:
    keyed = argparse.ArgumentParser(add_help=False, parents=[located])
    keyed.add_argument("key", help="a Python literal (1, 'a', (1, 2)) or a plain string")
    keyed.add_argument("--raw-key", action="store_true", help="take KEY as a string as typed")
    return keyed


def _moving(common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    moving = argparse.ArgumentParser(add_help=False, parents=[common])
    moving.add_argument("location", metavar="SRC")
    moving.add_argument("destination", metavar="DST")
    moving.add_argument(
        "--to-kind",
        "--kind",
        dest="to_kind",
        help="kind of a new destination (dir, file, sqltable, sql, hdf, hdfdir)",
    )
    return moving


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="klepto", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"klepto {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = _common()
    located = _located(common)
    keyed = _keyed(located)
    moving = _moving(common)
    commands.add_parser("info", parents=[located], help="kind, settings, size, last commit")
    ls = commands.add_parser("ls", parents=[located], help="list keys (record numbers)")
    ls.add_argument("--limit", type=int, help="at most this many")
    commands.add_parser("get", parents=[keyed], help="print the value of KEY")
    commands.add_parser("rm", parents=[keyed], help="delete KEY")
    commands.add_parser("verify", parents=[located], help="check every checksum")
    commands.add_parser("compact", parents=[located], help="reclaim space")
    export = commands.add_parser("export", parents=[located], help="write the contents as text")
    export.add_argument("--format", choices=("jsonl", "py", "csv"), default="jsonl")
    export.add_argument("--output", "-o", help="file to write (default: stdout)")
    commands.add_parser("copy", parents=[moving], help="copy every entry of SRC into DST")
    migrate = commands.add_parser(
        "migrate", parents=[moving], help="move a classic klepto 0.2 archive into klepto"
    )
    migrate.add_argument("--trust", action="store_true", help="allow unpickling (runs code)")
    migrate.add_argument(
        "--classic-kind", choices=("file", "dir", "sqltable", "sql"), help="layout of SRC"
    )
    tail = commands.add_parser("tail", parents=[located], help="the last records or commits")
    tail.add_argument("-n", "--lines", type=int, default=10, help="how many (default 10)")
    follow = commands.add_parser("follow", parents=[located], help="print new records as committed")
    follow.add_argument("--timeout", type=float, help="stop after this many idle seconds")
    follow.add_argument("--interval", type=float, default=0.2, help="poll interval (s)")
    follow.add_argument("--start", type=int, help="first record (or seq) to show; default: new")
    _cli_salvage.add_parser(commands, common)
    demo = commands.add_parser("demo", help="run the showcase: a slow function memoized twice")
    demo.add_argument("--calls", type=int, default=20, help="calls per run (default 20)")
    demo.add_argument("--delay", type=float, default=0.05, help="seconds per computation")
    demo.add_argument(
        "--dir", default=None, help="directory archive to use (default: a new temporary one)"
    )
    demo.set_defaults(handler=_demo, debug=False)
    return parser


def _status(exc: BaseException) -> int:
    """The exit status for an error (see the module docstring)."""
    from klepto._store_adapters import UnsupportedOperation
    from klepto.errors import UnsafeDataError

    if isinstance(exc, (KeyError, FileNotFoundError, IndexError)):
        return EXIT_FAILED
    if isinstance(exc, (UnsupportedOperation, UnsafeDataError)):
        return EXIT_USAGE
    return EXIT_ERROR


def _message(exc: BaseException) -> str:
    if isinstance(exc, KeyError):
        return f"not found: {exc.args[0]!r}" if exc.args else "not found"
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0] if text else type(exc).__name__


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        from klepto._cli_commands import HANDLERS

        handler = HANDLERS[args.command]
    try:
        return int(handler(args))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # every error becomes one line and a stable status
        if args.debug:
            traceback.print_exc()
        print(f"klepto {args.command}: {_message(exc)}", file=sys.stderr)
        return _status(exc)


if __name__ == "__main__":
    sys.exit(main())

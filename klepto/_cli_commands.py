"""The subcommands of ``klepto`` (parsing and error handling are in :mod:`klepto.cli`).

Each handler takes the parsed arguments and returns the exit status: 0 ok, 1 verification
failed or not found. Errors propagate to :func:`klepto.cli.main`, which maps them to the
other statuses.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterator
from typing import IO, Any

from klepto._cli_output import ProgressBar, emit_json, parse_key, show_mapping
from klepto._export import jsonable
from klepto.errors import CorruptionError
from klepto.stores import Store, open_archive, open_store

__all__ = ["HANDLERS"]

OK, FAILED = 0, 1


@contextlib.contextmanager
def _opened(args: argparse.Namespace, readonly: bool = True) -> Iterator[Store]:
    store = open_store(args.location, readonly=readonly, kind=getattr(args, "kind", None))
    try:
        branch = getattr(args, "branch", None)
        if branch is not None and hasattr(store, "branch"):
            store.branch = branch
        yield store
    finally:
        store.close()


def _bar(args: argparse.Namespace, label: str) -> ProgressBar:
    return ProgressBar(label, quiet=args.quiet)


def info(args: argparse.Namespace) -> int:
    with _opened(args) as store:
        details = store.info()
    if args.json:
        emit_json(details)
    else:
        show_mapping(details)
    return OK


def ls(args: argparse.Namespace) -> int:
    with _opened(args) as store:
        keys = list(store.keys(args.limit))
    if args.json:
        emit_json(keys)
    else:
        sys.stdout.writelines(f"{key!r}\n" for key in keys)
    return OK


def get(args: argparse.Namespace) -> int:
    key = parse_key(args.key, args.raw_key)
    with _opened(args) as store:
        value = store.get(key)
    if args.json:
        emit_json({"key": key, "value": value})
    else:
        sys.stdout.write(f"{value!r}\n")
    return OK


def rm(args: argparse.Namespace) -> int:
    key = parse_key(args.key, args.raw_key)
    with _opened(args, readonly=False) as store:
        store.remove(key)
    if not args.quiet:
        sys.stderr.write(f"removed {key!r}\n")
    return OK


def _unopenable(args: argparse.Namespace, exc: CorruptionError) -> dict[str, Any]:
    """A verification report for a store too damaged to open (its settings, its last commit)."""
    where = str(exc.path if exc.path is not None else args.location)
    problem = {"where": where, "reason": exc.reason}
    return {
        "location": args.location,
        "kind": "?",
        "ok": False,
        "checked": 0,
        "problems": [problem],
    }


def verify(args: argparse.Namespace) -> int:
    try:
        with _opened(args) as store, _bar(args, "verify") as bar:
            found = store.verify(progress=bar)
    except CorruptionError as exc:
        found = _unopenable(args, exc)
    if args.json:
        emit_json(found)
    else:
        status = "ok" if found["ok"] else f"DAMAGED: {len(found['problems'])} problem(s)"
        print(f"{found['location']} ({found['kind']}): {status}, {found['checked']} checked")
        for problem in found["problems"]:
            print(f"  {problem['where']}: {problem['reason']}")
    return OK if found["ok"] else FAILED


def compact(args: argparse.Namespace) -> int:
    with _opened(args, readonly=False) as store, _bar(args, "compact") as bar:
        done = store.compact(progress=bar)
    if args.json:
        emit_json(done)
    else:
        show_mapping(done)
    return OK


def _output(path: str | None) -> contextlib.AbstractContextManager[IO[str]]:
    if path is None or path == "-":
        return contextlib.nullcontext(sys.stdout)
    return open(path, "w", encoding="utf-8", newline="")


def export(args: argparse.Namespace) -> int:
    with _opened(args) as store, _bar(args, "export") as bar, _output(args.output) as out:
        count = store.export(out, args.format, progress=bar)
    if args.output not in (None, "-") and not args.quiet:
        sys.stderr.write(f"exported {count} entries to {args.output}\n")
    return OK


def _moved(args: argparse.Namespace, verb: str, count: int, source: str) -> None:
    if args.json:
        emit_json({verb: count, "from": source, "to": args.destination})
    elif not args.quiet:
        print(f"{verb} {count} entries from {source} to {args.destination}")


def copy(args: argparse.Namespace) -> int:
    from klepto.archives._maintenance import copy_archive

    with _opened(args) as store:
        source = getattr(store, "archive", None)
        if source is None or store.kind == "tlog":
            source = dict(store.items())
        target = open_archive(args.destination, kind=args.to_kind)
        try:
            with _bar(args, "copy") as bar:
                count = _copy_into(copy_archive, source, target, bar)
        finally:
            target.close()
    _moved(args, "copied", count, args.location)
    return OK


def _copy_into(copy_archive: Any, source: Any, target: Any, bar: ProgressBar) -> int:
    if isinstance(source, dict):  # a log's or record file's items: write them as one batch
        target.update(source)
        bar(len(source), len(source))
        return len(source)
    return copy_archive(source, target, progress=bar)  # type: ignore[no-any-return]


def migrate(args: argparse.Namespace) -> int:
    from klepto.archives._migrate import migrate_classic

    target = open_archive(args.destination, kind=args.to_kind)
    try:
        with _bar(args, "migrate") as bar:
            count = migrate_classic(
                args.location, target, trust=args.trust, kind=args.classic_kind, progress=bar
            )
    finally:
        target.close()
    _moved(args, "migrated", count, args.location)
    return OK


def _print_record(args: argparse.Namespace, record: Any) -> None:
    if args.json:
        print(json.dumps(jsonable(record), ensure_ascii=False), flush=True)
    else:
        print(repr(record), flush=True)


def tail(args: argparse.Namespace) -> int:
    with _opened(args) as store:
        records = store.tail(args.lines)
    for record in records:
        _print_record(args, record)
    return OK


def follow(args: argparse.Namespace) -> int:
    with _opened(args) as store:
        try:
            for record in store.follow(args.timeout, args.interval, args.start):
                _print_record(args, record)
        except KeyboardInterrupt:
            return OK  # Ctrl-C is how a person stops following
    return OK


HANDLERS = {
    "info": info,
    "ls": ls,
    "get": get,
    "rm": rm,
    "verify": verify,
    "compact": compact,
    "export": export,
    "copy": copy,
    "migrate": migrate,
    "tail": tail,
    "follow": follow,
}

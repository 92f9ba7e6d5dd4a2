"""The ``matalu`` command. Thin: parses arguments, then calls the packages (docs/DESIGN.md §10).

Each subcommand lives in ``matalu/commands/<name>.py``; ``submit`` wraps any of them as a Ray job."""

from __future__ import annotations

import argparse
import importlib
import sys

from jobs.cluster import ClusterError
from matalu.commands import COMMANDS

# Errors a user can fix: printed as one line, exit status 2 (no traceback).
USER_ERRORS = (FileNotFoundError, ValueError, KeyError, PermissionError, ClusterError)


def build_parser() -> tuple[argparse.ArgumentParser, dict]:
    parser = argparse.ArgumentParser(prog="matalu", description="Telugu speech data pipeline (see README.md)")
    sub = parser.add_subparsers(dest="cmd", required=True)
    modules = {}
    for name in COMMANDS:
        mod = importlib.import_module(f"matalu.commands.{name}")
        mod.add_parser(sub)
        modules[name] = mod
    sub.add_parser("submit", help="run a subcommand as a Ray job: matalu submit ingest … --address http://HEAD:8265")
    return parser, modules


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "submit":
        from matalu.commands.submit import run_argv

        return run_argv(argv[1:])
    parser, modules = build_parser()
    args = parser.parse_args(argv)
    try:
        return modules[args.cmd].run(args)
    except USER_ERRORS as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"matalu {args.cmd}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""The ``livertumorseg`` command line. Each subcommand lives in ``LiverTumorSegLib/commands/<name>.py``
with two functions:

* ``register(subparsers) -> argparse.ArgumentParser``: adds its parser (help text, options);
* ``run(args) -> int``: does the work and returns the exit code.

Errors the user can fix (:class:`~LiverTumorSegLib.errors.LiverTumorSegError`) print one line
``error: ...`` and exit 2; Ctrl-C exits 130; anything else is a bug: one line plus a hint to rerun with
``--debug`` for the traceback, exit 1.
"""
import argparse
import importlib
import json
import os
import logging
import sys
from typing import List, Optional

from . import __version__
from .errors import LiverTumorSegError, cli_wording

# name -> module under LiverTumorSegLib.commands; imported lazily so `--help` stays fast.
COMMANDS = ["segment", "preprocess", "models", "train", "crossval", "evaluate"]


def _load_command(name: str):
    return importlib.import_module(f"LiverTumorSegLib.commands.{name}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="livertumorseg",
        description="Liver and liver-tumor segmentation of abdominal CT (not a medical device).")
    parser.add_argument("--version", action="version", version=f"livertumorseg {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks and debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = _load_command(name)
        except ImportError as exc:  # a command whose module is missing is listed but unusable
            p = sub.add_parser(name, help=f"(unavailable: {exc})")
            p.set_defaults(_unavailable=str(exc))
            continue
        p = module.register(sub)
        p.set_defaults(_run=module.run)
    return parser


def _wants_json_progress(argv: List[str]) -> bool:
    """``--progress json`` among the raw arguments (so even a usage error answers in JSON)."""
    return "--progress=json" in argv or any(a == "--progress" and b == "json" for a, b in zip(argv, argv[1:]))


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    raw = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parser.parse_args(raw)
    except SystemExit as exc:  # usage error (argparse printed it on stderr) or --help / --version
        if exc.code not in (0, None) and _wants_json_progress(raw):
            print(json.dumps({"error": "invalid command-line arguments (usage on stderr)"}), flush=True)
        raise
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO, format="%(message)s")
    if args.command is None:
        parser.print_help()
        return 2
    if getattr(args, "_unavailable", None):
        print(f"error: command '{args.command}' is unavailable: {args._unavailable}", file=sys.stderr)
        return 2
    try:
        with cli_wording():  # messages name --flags, not Python arguments
            return int(args._run(args) or 0)
    except LiverTumorSegError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into e.g. `head`, which closed early: not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except Exception as exc:  # noqa: BLE001 - last-resort message for bugs
        if args.debug:
            raise
        print(f"internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback; "
              f"please report it)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

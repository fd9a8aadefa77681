"""The ``physres`` command. Each subcommand lives in its own module in this package and
defines ``add_parser(subparsers)``; the parser it adds sets ``func(args) -> int``."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from .._version import __version__
from ..errors import PhysresError

# Errors a user can cause with bad input: reported in one line, no traceback.
USER_ERRORS = (PhysresError, ValueError, TypeError, KeyError, FileNotFoundError,
               FileExistsError, PermissionError, IsADirectoryError, NotADirectoryError, OSError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="physres",
        description="Residual blocks as time-steppers: generate reference data, train learned "
                    "integrators, validate and compare steppers, run scenarios.",
    )
    parser.add_argument("--version", action="version", version=f"physres {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("physres: interrupted", file=sys.stderr)
        return 130
    except USER_ERRORS as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"physres {args.command}: error: {message}", file=sys.stderr)
        return 2


def parse_params(pairs: list[str] | None) -> dict:
    """``["mu=1000", "name=x"]`` → ``{"mu": 1000, "name": "x"}`` (numbers, JSON values, strings)."""
    import json

    params = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--param expects key=value, got {pair!r}")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    return params


if __name__ == "__main__":
    sys.exit(main())

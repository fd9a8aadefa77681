"""The ``physres`` command. Each subcommand lives in its own module in this package and
defines ``add_parser(subparsers)``; the parser it adds sets ``func(args) -> int``."""

from __future__ import annotations

import argparse
import dis
import errno
import importlib
import pkgutil
import sys
from pathlib import Path

from .._version import __version__
from ..errors import PhysresError

# Errors a user can cause, reported in one line without a traceback: physres's own error
# types; ValueError / TypeError / LookupError / OSError / FloatingPointError raised by a
# `raise` statement in physres or a scenario (its input checks, "lower `lr`"); and OSErrors
# of the operating system about a path (missing, not writable, disk full). Anything else is
# a bug and keeps its traceback.
USER_ERRORS = (PhysresError, ValueError, TypeError, LookupError, OSError, FloatingPointError)
PATH_ERRNOS = frozenset(
    {
        errno.ENOENT,
        errno.EACCES,
        errno.EPERM,
        errno.EEXIST,
        errno.EISDIR,
        errno.ENOTDIR,
        errno.ENOSPC,
        errno.EDQUOT,
        errno.EROFS,
        errno.ENAMETOOLONG,
        errno.EFBIG,
        errno.ENOTEMPTY,
        errno.EBUSY,
    }
)
_RAISE = dis.opmap["RAISE_VARARGS"]


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
        hint = getattr(args, "interrupt_hint", None)
        print("physres: interrupted" + (f"; {hint}" if hint else ""), file=sys.stderr)
        return 130
    except USER_ERRORS as exc:
        if not is_user_error(exc):
            raise
        print(f"physres {args.command}: error: {error_line(exc)}", file=sys.stderr)
        return 2


def is_user_error(exc: BaseException) -> bool:
    """Whether ``exc`` is bad input or a bad path (one line) rather than a bug (traceback)."""
    if isinstance(exc, PhysresError):
        return True
    if isinstance(exc, OSError) and exc.errno in PATH_ERRNOS:
        return True
    return isinstance(exc, USER_ERRORS) and _raised_by_physres(exc)


def _raised_by_physres(exc: BaseException) -> bool:
    """True when the innermost frame of ``exc`` is a ``raise`` statement in physres or in a
    scenario file: an input check, not an error deep inside a library or a Python bug."""
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    code = tb.tb_frame.f_code
    if tb.tb_lasti < 0 or code.co_code[tb.tb_lasti] != _RAISE:
        return False
    file = Path(code.co_filename).resolve()
    roots = [Path(__file__).resolve().parent.parent]
    from .. import runner

    roots += runner.scenario_dirs()
    return any(file.is_relative_to(root) for root in roots)


def error_line(exc: BaseException) -> str:
    """The one line printed for a user error."""
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror
        if exc.filename is not None and str(exc.filename) not in text:
            text += f": {str(exc.filename)!r}"
    else:
        text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    text = text.strip()
    return text.splitlines()[0] if text else type(exc).__name__


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

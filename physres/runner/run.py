"""Running one scenario: preset and ``--config`` overrides, device and threads, the output
directory, timing, the report header, ``report.json`` / ``report.md`` and the figures.

``physres run NAME`` and ``python scenarios/NAME.py`` are the same call: the script's hook
(:func:`script`) hands its own path and arguments to ``physres run``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from .. import _overrides
from .context import DEVICES, Context, cpu_threads, resolve_device
from .discovery import load_scenario, scenario_path
from .report import HEADER, compose_markdown, header, write_report


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags every scenario takes."""
    parser.add_argument(
        "--quick",
        action="store_true",
        help="start from the QUICK preset: small sizes, at most a few minutes "
        "of CPU time (one core); wall time grows with the machine's load",
    )
    parser.add_argument(
        "--config",
        metavar="FILE.toml",
        default=None,
        help="a TOML table of Config fields that replace the preset's",
    )
    parser.add_argument(
        "--out", metavar="DIR", default=None, help="output directory (default: runs/NAME)"
    )
    parser.add_argument(
        "--device",
        choices=DEVICES,
        default="auto",
        help="torch device of the models and tensors (default: auto, cuda "
        "when available, else cpu)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def scenario_config(module, quick: bool = False, config=None):
    """``(cfg, preset, overrides)``: the ``QUICK`` or ``FULL`` preset of the scenario module,
    with the fields of ``config`` (a TOML file path, or a mapping) replaced."""
    preset = "quick" if quick else "full"
    cfg = module.QUICK if quick else module.FULL
    if config is None:
        return cfg, preset, {}
    if isinstance(config, Mapping):
        values, where = dict(config), "config"
    else:
        values, where = _overrides.read_table(config), f"--config {str(config)!r}"
    return _overrides.override(cfg, values, where=where), preset, values


def run_scenario(
    name, out=None, *, quick: bool = False, device="auto", progress: bool = True, config=None
) -> dict:
    """Run scenario ``name`` (a name found by discovery, or a ``.py`` path) into ``out``
    (default ``runs/NAME``) and return its report (what ``report.json`` holds).

    ``config``: a TOML file (or a mapping) of Config fields replacing those of the preset.
    """
    path = scenario_path(name)
    name = path.stem
    device = resolve_device(device)
    module = load_scenario(path)
    cfg, preset, overrides = scenario_config(module, quick, config)
    out = Path(out) if out is not None else Path("runs") / name
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"`--out` must be a directory, got the file {str(out)!r}")
    out.mkdir(parents=True, exist_ok=True)
    ctx = Context(name=name, out=out, device=device, preset=preset, progress=bool(progress))
    start = time.perf_counter()
    with cpu_threads(device):
        result = module.run(cfg, ctx)
    wall = time.perf_counter() - start
    values, body = _unpack(name, result)
    report = header(name, preset, device, dataclasses.asdict(cfg), overrides)
    clash = sorted(set(values) & set(HEADER))
    if clash:
        raise TypeError(
            f"scenario {name!r}: the runner sets {', '.join(clash)}; run must not return them"
        )
    report.update(values)
    report.setdefault("figures", list(ctx.figures))
    misplaced = ctx.misplaced()
    if misplaced:  # a bug in the scenario or the training code, not bad input
        raise RuntimeError(f"scenario {name!r}: not on --device {device}: {misplaced[:3]}")
    report["placement"] = _placement(ctx)
    report["wall_s"] = wall
    if ctx.phases:  # blocks the scenario timed with ctx.phase
        report["phase_s"] = dict(ctx.phases)
    write_report(out, report, compose_markdown(report, body))
    return report


def _unpack(name, result) -> tuple[dict, str]:
    """``run`` returns ``(report, markdown)`` or only the report dict."""
    if isinstance(result, Mapping):
        return dict(result), ""
    if (
        isinstance(result, tuple)
        and len(result) == 2
        and isinstance(result[0], Mapping)
        and isinstance(result[1], str)
    ):
        return dict(result[0]), result[1]
    raise TypeError(
        f"scenario {name!r}: run must return (report dict, markdown str), "
        f"got {type(result).__name__}"
    )


def _placement(ctx: Context) -> dict:
    """How many modules and tensors went through ``ctx``, and on which devices."""
    kinds: dict[str, int] = {}
    for r in ctx.placement:
        kinds[r["kind"]] = kinds.get(r["kind"], 0) + 1
    devices = sorted({d for r in ctx.placement for d in r["devices"]})
    return {"counts": kinds, "devices": devices}


def script(file) -> None:
    """The hook of a scenario file: ``python scenarios/NAME.py ARGS`` is
    ``physres run scenarios/NAME.py ARGS``."""
    from ..cli import main

    sys.exit(main(["run", str(file), *sys.argv[1:]]))

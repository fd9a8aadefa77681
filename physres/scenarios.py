"""Scenarios: one runnable script per physical story, found by name and run the same way.

A scenario is a file ``scenarios/NAME.py`` that defines ``SUMMARY`` (one line) and
``main(out, quick=False, device=None, progress=True) -> dict``. It writes its data, models,
``report.json``, ``report.md`` and PNG figures under ``out`` and returns the report. When the
report holds a ``"summary"`` list of rows (dicts), that is the closing table in the terminal.

Scenarios are looked up, first match wins, in: the directories of the environment variable
``PHYSRES_SCENARIOS`` (``os.pathsep``-separated), ``./scenarios`` in the current directory, and
the ``scenarios/`` directory next to the installed ``physres`` package (editable install).

>>> from physres.scenarios import summary_table
>>> print(summary_table([{"stepper": "rk4", "error": 1.234e-7}]))
stepper  error
-------  ---------
rk4      1.234e-07
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import importlib.util
import math
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path

import torch

from . import _output
from ._checks import default_device

ENV_VAR = "PHYSRES_SCENARIOS"
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")

__all__ = ["cli", "cpu_threads", "fit_for_steps", "list_scenarios", "load_scenario",
           "markdown_table", "pyplot", "resolve_device", "run_scenario", "savefig",
           "scenario_dirs", "scenario_summary", "summary_table", "write_report"]


# --- discovery --------------------------------------------------------------------------------
def scenario_dirs() -> list[Path]:
    """Directories searched for ``NAME.py``, in order of precedence (existing ones only)."""
    candidates = [Path(p) for p in os.environ.get(ENV_VAR, "").split(os.pathsep) if p]
    candidates += [Path.cwd() / "scenarios", Path(__file__).resolve().parent.parent / "scenarios"]
    dirs: list[Path] = []
    for d in candidates:
        d = d.resolve()
        if d.is_dir() and d not in dirs:
            dirs.append(d)
    return dirs


def _files() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for d in scenario_dirs():
        for path in sorted(d.glob("*.py")):
            if _NAME.match(path.stem) and path.stem not in found:
                found[path.stem] = path
    return found


def list_scenarios() -> list[str]:
    """Names of the scenarios found, sorted."""
    return sorted(_files())


def _path(name: str) -> Path:
    if not isinstance(name, str):
        raise TypeError(f"`name` must be a scenario name (str), got {type(name).__name__}")
    files = _files()
    if name not in files:
        valid = ", ".join(sorted(files)) or "none found"
        raise ValueError(f"unknown scenario {name!r}; valid names: {valid} "
                         f"(`physres run --list` describes them)")
    return files[name]


def scenario_summary(name: str) -> str:
    """The scenario's ``SUMMARY`` line, read from its source without running it."""
    path = _path(name)
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in tree.body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name) and node.targets[0].id == "SUMMARY"
                and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)):
            return node.value.value.strip().splitlines()[0]
    return ast.get_docstring(tree, clean=True).splitlines()[0] if ast.get_docstring(tree) else ""


def load_scenario(name: str):
    """Import ``scenarios/NAME.py`` as a module; it must define ``main``."""
    path = _path(name)
    spec = importlib.util.spec_from_file_location(f"physres_scenario_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses and pickling look the module up by name
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(spec.name, None)
        raise
    if not callable(getattr(module, "main", None)):
        raise TypeError(f"scenario {name!r} ({path}) must define "
                        "main(out, quick, device, progress)")
    return module


# --- running ----------------------------------------------------------------------------------
def resolve_device(device) -> str:
    """``None`` → ``cuda`` when available else ``cpu``; checks that ``cuda`` is available."""
    if device is None:
        return default_device().type
    if device not in ("cpu", "cuda"):
        raise ValueError(f"`device` must be 'cpu' or 'cuda', got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("`device` 'cuda' was requested but CUDA is not available; "
                         "use --device cpu")
    return device


def run_scenario(name_or_main, out=None, *, quick: bool = False, device=None,
                 progress: bool = True) -> dict:
    """Run a scenario by name (or its ``main``) into ``out`` (default ``runs/NAME``)."""
    main = load_scenario(name_or_main).main if isinstance(name_or_main, str) else name_or_main
    name = name_or_main if isinstance(name_or_main, str) else _main_name(main)
    device = resolve_device(device)
    out = Path(out) if out is not None else Path("runs") / name
    out.mkdir(parents=True, exist_ok=True)
    report = main(out, quick=bool(quick), device=device, progress=progress)
    if not isinstance(report, Mapping):
        raise TypeError(f"scenario {name!r}: main must return the report dict, "
                        f"got {type(report).__name__}")
    return dict(report)


def _main_name(main) -> str:
    module = sys.modules.get(getattr(main, "__module__", ""), None)
    file = getattr(module, "__file__", None)
    return Path(file).stem if file else "scenario"


def closing_text(report: Mapping, out) -> str:
    """The summary table, then where the report and the figures are."""
    out = Path(out)
    rows = report.get("summary")
    if not rows:
        rows = [{"metric": k, "value": v} for k, v in _leaves(report)][:30]
    figures = sorted(p.name for p in out.glob("*.png"))
    lines = [summary_table(rows), ""]
    if (out / "report.md").exists():
        lines.append(f"report   {out / 'report.md'}  (machine-readable: report.json)")
    if figures:
        lines.append(f"figures  {out}/ ({len(figures)} PNG: {', '.join(figures)})")
    return "\n".join(lines)


def _leaves(obj, prefix=""):
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            yield from _leaves(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(obj, (int, float, str, bool)) or obj is None:
        yield prefix, obj


def cli(main, argv: list[str] | None = None) -> dict:
    """Command line of a scenario file: ``python scenarios/NAME.py [--quick] [--out DIR]
    [--device cpu|cuda] [--no-progress]``. Runs ``main``, prints the closing summary."""
    name = _main_name(main)
    module = sys.modules.get(getattr(main, "__module__", ""), None)
    parser = argparse.ArgumentParser(prog=f"{name}.py",
                                     description=getattr(module, "SUMMARY", None))
    add_run_arguments(parser)
    args = parser.parse_args(argv)
    out = Path(args.out) if args.out else Path("runs") / name
    try:
        report = run_scenario(main, out, quick=args.quick, device=args.device,
                              progress=not args.no_progress)
    except (ValueError, TypeError) as exc:
        parser.exit(2, f"{name}: error: {str(exc).strip().splitlines()[0]}\n")
    print(closing_text(report, out))
    return report


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags every scenario takes (shared by ``cli`` and ``physres run``)."""
    parser.add_argument("--quick", action="store_true",
                        help="small sizes: at most a few minutes of CPU time (one core); "
                             "wall time grows with the machine's load")
    parser.add_argument("--out", metavar="DIR", default=None,
                        help="output directory (default: runs/NAME)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None,
                        help="torch device (default: cuda when available, else cpu)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


@contextlib.contextmanager
def cpu_threads(device, n: int = 1):
    """Run the block with ``n`` torch threads when ``device`` is the CPU, then restore.

    Small networks and batches gain nothing from intra-op threads, and on a busy machine
    the threads' spin-waiting makes them many times slower.
    """
    previous = torch.get_num_threads()
    if str(device) == "cpu":
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def fit_for_steps(model, data, steps: int, *, unroll: int = 1, frame_step: int = 1,
                  batch_size: int = 128, lr: float = 3e-3, normalize: bool = True, device=None,
                  progress: bool = True):
    """Train ``model`` on ``data`` for about ``steps`` optimiser steps, with the cosine schedule
    spanning exactly those steps (``physres.training.fit`` counts in epochs), and no
    second-order finish (a budget in optimiser steps means AdamW steps). ``normalize`` as in
    :class:`physres.training.TrainConfig`."""
    import physres.data
    import physres.training

    windows = len(physres.data.WindowDataset(data, input_len=1, target_len=unroll,
                                             frame_step=frame_step, split="train"))
    per_epoch = max(1, math.ceil(windows / batch_size))
    epochs = max(1, round(steps / per_epoch))
    config = physres.training.TrainConfig(
        epochs=epochs, batch_size=batch_size, lr=lr, unroll=unroll, frame_step=frame_step,
        curriculum_epochs=max(1, epochs // 2), patience=None, val_every=epochs,
        normalize=normalize, device=device, progress=progress, polish_steps=0)
    return physres.training.fit(model, data, config)


# --- reports, tables and figures: thin users of physres._output ---------------------------------
def write_report(out, report: Mapping, markdown: str) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.md`` under ``out``, each atomically.

    Numpy and torch scalars/arrays are converted; a non-finite number raises ``ValueError``
    naming its key (store ``None`` for "not available"). Returns the two paths.
    """
    if not isinstance(markdown, str):
        raise TypeError(f"`markdown` must be a str, got {type(markdown).__name__}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    text = _output.dumps(report, nonfinite="raise", where="report")
    json_path, md_path = out / "report.json", out / "report.md"
    _output.write_text(json_path, text)
    _output.write_text(md_path, markdown)
    return json_path, md_path


def summary_table(rows) -> str:
    """A plain aligned text table from a list of dicts (keys → columns) or of sequences
    (the first one is the header). Floats are shown with 4 significant digits."""
    return _output.text_table(rows)


def markdown_table(rows) -> str:
    """The same rows as a Markdown (GitHub) table, for ``report.md``."""
    return _output.markdown_table(rows)


def pyplot():
    """A pyplot-like namespace (``subplots``, ``figure``, ``close``, ``rcParams``) that builds
    bare ``matplotlib.figure.Figure`` objects: no backend switch, no global figure state."""
    return _output.PyplotLike()


def savefig(fig, path, dpi: int = 110) -> str:
    """Lay out, write ``fig`` as PNG at ``path`` (atomically, see :mod:`physres._io`);
    returns the file name."""
    _output.save_figure(fig, path, dpi=dpi)
    return Path(path).name

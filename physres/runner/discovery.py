"""Finding scenarios by name: ``NAME.py`` files in the scenario directories.

Searched in order, first match wins: the directories of the environment variable
``PHYSRES_SCENARIOS`` (``os.pathsep``-separated), then the scenarios shipped with physres —
the ``scenarios/`` folder of a checkout (also what an editable install runs), or the
``physres.scenarios`` package of an installed wheel (the same files).
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import sys
from pathlib import Path

ENV_VAR = "PHYSRES_SCENARIOS"
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_PACKAGE = Path(__file__).resolve().parent.parent  # the physres package directory
REQUIRED = ("SUMMARY", "Config", "QUICK", "FULL", "run")


def shipped_dir() -> Path | None:
    """The scenarios that come with physres: ``<checkout>/scenarios`` next to the package
    (checkout, editable install) or ``physres/scenarios`` (wheel install)."""
    checkout = _PACKAGE.parent
    candidates = [_PACKAGE / "scenarios"]
    if (checkout / "pyproject.toml").is_file():
        candidates.insert(0, checkout / "scenarios")
    for d in candidates:
        if (d / "__init__.py").is_file():
            return d
    return None


def scenario_dirs() -> list[Path]:
    """Directories searched for ``NAME.py``, in order of precedence (existing ones only)."""
    candidates = [Path(p) for p in os.environ.get(ENV_VAR, "").split(os.pathsep) if p]
    shipped = shipped_dir()
    candidates += [shipped] if shipped is not None else []
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


def scenario_path(name) -> Path:
    """The file of scenario ``name``; a path to a ``.py`` file is taken as it is."""
    if isinstance(name, Path) or (isinstance(name, str) and name.endswith(".py")):
        path = Path(name)
        if not path.is_file():
            raise FileNotFoundError(f"scenario file {str(path)!r} does not exist")
        return path.resolve()
    if not isinstance(name, str):
        raise TypeError(
            f"`name` must be a scenario name (str) or a .py path, got {type(name).__name__}"
        )
    files = _files()
    if name not in files:
        valid = ", ".join(sorted(files)) or "none found"
        raise ValueError(
            f"unknown scenario {name!r}; valid names: {valid} (`physres run --list` describes them)"
        )
    return files[name]


def scenario_summary(name) -> str:
    """The scenario's ``SUMMARY`` line, read from its source without running it."""
    path = scenario_path(name)
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
            and node.targets[0].id == "SUMMARY"
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            return node.value.value.strip().splitlines()[0]
    doc = ast.get_docstring(tree, clean=True)
    return doc.splitlines()[0] if doc else ""


def load_scenario(name):
    """Import the scenario file as a module (``physres_scenario_NAME``) and check that it
    declares ``SUMMARY``, ``Config``, ``QUICK``, ``FULL`` and ``run``."""
    path = scenario_path(name)
    spec = importlib.util.spec_from_file_location(f"physres_scenario_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses and pickling look the module up by name
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(spec.name, None)
        raise
    missing = [n for n in REQUIRED if not hasattr(module, n)]
    if missing or not callable(module.run):
        raise TypeError(
            f"scenario {path.stem!r} ({path}) must define SUMMARY, a Config "
            "dataclass with QUICK and FULL presets, and run(cfg, ctx); missing: "
            + ", ".join(missing or ["a callable run"])
        )
    for preset in ("QUICK", "FULL"):
        if not isinstance(getattr(module, preset), module.Config):
            raise TypeError(
                f"scenario {path.stem!r}: {preset} must be a Config, got "
                f"{type(getattr(module, preset)).__name__}"
            )
    return module

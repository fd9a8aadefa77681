"""The scenario runner: find a scenario, run its ``run(cfg, ctx)``, write its report.

A scenario is a file ``NAME.py`` that declares a module docstring, ``SUMMARY`` (one line), a
frozen ``Config`` dataclass with ``QUICK`` and ``FULL`` presets, and
``run(cfg, ctx) -> (report, markdown)``; see ``docs/scenarios.md``. The runner owns the rest:
device (:mod:`.context`), discovery (:mod:`.discovery`), the report (:mod:`.report`) and the
run itself (:mod:`.run`).

>>> from physres.runner import list_scenarios
>>> "depth" in list_scenarios()
True
"""

from .context import Context, cpu_threads, cpu_time_ratio, resolve_device
from .discovery import (
    ENV_VAR,
    list_scenarios,
    load_scenario,
    scenario_dirs,
    scenario_path,
    scenario_summary,
    shipped_dir,
)
from .report import closing_text, savefig, write_report
from .run import add_run_arguments, run_scenario, scenario_config, script

__all__ = [
    "ENV_VAR",
    "Context",
    "add_run_arguments",
    "closing_text",
    "cpu_threads",
    "cpu_time_ratio",
    "list_scenarios",
    "load_scenario",
    "resolve_device",
    "run_scenario",
    "savefig",
    "scenario_config",
    "scenario_dirs",
    "scenario_path",
    "scenario_summary",
    "script",
    "shipped_dir",
    "write_report",
]

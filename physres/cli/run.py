"""``physres run NAME [--quick] [--config FILE.toml] [--out DIR] [--device auto|cpu|cuda]``
and ``physres run --list``."""

from __future__ import annotations

from pathlib import Path

from .. import runner


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "run",
        help="run a scenario (scenarios/NAME.py): data, models, report and figures",
        description="Run scenario NAME (or a scenario file PATH.py) and write its data, trained "
        "models, report.json, report.md and PNG figures under --out. `--quick` "
        "keeps it within a few minutes on a CPU; the default size is meant for a "
        "GPU. `--config FILE.toml` replaces fields of the chosen preset.",
    )
    p.add_argument("name", nargs="?", metavar="NAME", help="scenario name (see --list) or path")
    p.add_argument("--list", action="store_true", help="list the scenarios, one line each")
    runner.add_run_arguments(p)
    p.set_defaults(func=run)


def run(args) -> int:
    if args.list:
        names = runner.list_scenarios()
        if not names:
            print(
                "no scenarios found (searched: "
                + (", ".join(map(str, runner.scenario_dirs())) or "no scenarios/ directory")
                + ")"
            )
            return 0
        width = max(map(len, names))
        for name in names:
            print(f"{name:<{width}}  {runner.scenario_summary(name)}")
        return 0
    if args.name is None:
        raise ValueError("give a scenario NAME, or --list to see them")
    stem = Path(args.name).stem if args.name.endswith(".py") else args.name
    out = Path(args.out) if args.out else Path("runs") / stem
    report = runner.run_scenario(
        args.name,
        out,
        quick=args.quick,
        device=args.device,
        progress=not args.no_progress,
        config=args.config,
    )
    print(runner.closing_text(report, out))
    return 0

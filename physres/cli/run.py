"""``physres run NAME [--quick] [--out DIR] [--device cpu|cuda]`` and ``physres run --list``."""

from __future__ import annotations

from pathlib import Path

from .. import scenarios


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "run", help="run a scenario (scenarios/NAME.py): data, models, report and figures",
        description="Run scenarios/NAME.py and write its data, trained models, report.json, "
                    "report.md and PNG figures under --out. `--quick` keeps it within a few "
                    "minutes on a CPU; the default size is meant for a GPU.")
    p.add_argument("name", nargs="?", metavar="NAME", help="scenario name (see --list)")
    p.add_argument("--list", action="store_true", help="list the scenarios, one line each")
    scenarios.add_run_arguments(p)
    p.set_defaults(func=run)


def run(args) -> int:
    if args.list:
        names = scenarios.list_scenarios()
        if not names:
            print("no scenarios found (searched: "
                  + (", ".join(map(str, scenarios.scenario_dirs())) or "no scenarios/ directory")
                  + ")")
            return 0
        width = max(map(len, names))
        for name in names:
            print(f"{name:<{width}}  {scenarios.scenario_summary(name)}")
        return 0
    if args.name is None:
        raise ValueError("give a scenario NAME, or --list to see them")
    out = Path(args.out) if args.out else Path("runs") / args.name
    report = scenarios.run_scenario(args.name, out, quick=args.quick, device=args.device,
                                    progress=not args.no_progress)
    print(scenarios.closing_text(report, out))
    return 0

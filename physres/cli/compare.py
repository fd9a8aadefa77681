"""``physres compare SYSTEM --steppers a,b,c [--dt ...] --out DIR``: the stepper study."""

from __future__ import annotations

from pathlib import Path


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "compare",
        help="compare steppers on a system: orders, work-precision, stability",
        description="Run each stepper on SYSTEM at each step size against an exact or scipy "
        "reference: error vs dt with fitted orders, work-precision, invariant "
        "drift, and the largest stable dt found by search, with figures "
        "(including stability regions). Ends with a summary table.",
    )
    p.add_argument("system", metavar="SYSTEM", help="registered system name")
    p.add_argument(
        "--steppers",
        required=True,
        metavar="A,B,C",
        help="comma-separated stepper names, e.g. euler,rk4,backward_euler",
    )
    p.add_argument(
        "--dt",
        nargs="+",
        metavar="DT",
        help="step sizes (space- or comma-separated; default dt_save·2^-k, k=0..5)",
    )
    p.add_argument("--t-end", type=float, metavar="T", help="final time (default: the system's)")
    p.add_argument(
        "--param",
        action="append",
        metavar="KEY=VALUE",
        help="system parameter (repeatable), e.g. --param omega=2",
    )
    p.add_argument("--n-traj", type=int, default=4, metavar="N", help="initial states (default 4)")
    p.add_argument("--seed", type=int, default=0, help="seed of the initial states")
    p.add_argument(
        "--no-stability", action="store_true", help="skip the search of the largest stable dt"
    )
    p.add_argument(
        "--out", required=True, metavar="DIR", help="write report.json, report.md and figures here"
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..validation import compare_steppers
    from . import parse_params

    study = compare_steppers(
        args.system,
        args.steppers,
        dts=_dts(args.dt),
        t_end=args.t_end,
        params=parse_params(args.param),
        n_traj=args.n_traj,
        seed=args.seed,
        stability=not args.no_stability,
        progress=not args.no_progress,
    )
    report = study.report()
    report.save(args.out)
    print(report.table())
    print(f"\nreport: {Path(args.out) / 'report.md'} (figures beside it)")
    return 0


def _dts(values):
    if not values:
        return None
    out = []
    for v in values:
        for part in v.split(","):
            if part.strip():
                try:
                    out.append(float(part))
                except ValueError:
                    raise ValueError(f"--dt expects numbers, got {part!r}") from None
    return out

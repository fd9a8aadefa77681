"""``physres validate MODEL DATA.h5 [--out DIR]``: a stepper against reference trajectories."""

from __future__ import annotations

from pathlib import Path


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "validate",
        help="score a learned model or a stepper against an HDF5 reference",
        description="Roll MODEL out from the initial states of DATA.h5 on its time grid and "
        "compare with the reference: errors vs time, valid prediction time, "
        "invariant drift, cost beside the reference's. MODEL is a model file "
        "written by physres.save (physres train) or a stepper name (euler, rk4, "
        "...) run on the file's system. Ends with a summary table.",
    )
    p.add_argument("model", metavar="MODEL", help="model file (.pt) or stepper name")
    p.add_argument("data", metavar="DATA.h5", help="trajectory file (physres generate)")
    p.add_argument("--out", metavar="DIR", help="write report.json, report.md and figures here")
    p.add_argument("--n-traj", type=int, metavar="N", help="score only the first N trajectories")
    p.add_argument(
        "--split",
        choices=["train", "val", "test"],
        help="score only this split of the file (use test for a model trained on it)",
    )
    p.add_argument(
        "--substeps",
        type=int,
        default=1,
        metavar="K",
        help="steps per saved interval for a known-physics stepper (default 1)",
    )
    p.add_argument(
        "--lyapunov",
        type=float,
        metavar="LAMBDA",
        help="the system's largest Lyapunov exponent: report VPT in Lyapunov times",
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=0.5,
        help="nRMSE threshold of the valid prediction time (default 0.5)",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..validation import validate

    stepper, meta = _model(args.model)
    report = validate(
        stepper,
        args.data,
        out=args.out,
        n_traj=args.n_traj,
        split=args.split,
        substeps=args.substeps,
        threshold=args.threshold,
        lyapunov_exponent=args.lyapunov,
        system=meta.get("system"),
        system_params=meta.get("system_params"),
        progress=not args.no_progress,
    )
    print(report.table())
    if args.out:
        print(f"\nreport: {Path(args.out) / 'report.md'} (figures beside it)")
    return 0


def _model(spec: str):
    """(stepper or stepper name, recorded {"system", "system_params"}) from the MODEL argument."""
    from .. import artifacts, steppers

    path = Path(spec)
    if path.is_file():
        model = artifacts.load(path)
        meta = artifacts.metadata(path)
        meta = meta if isinstance(meta, dict) else {}
        system, params = meta.get("system"), meta.get("system_params")
        return model, {
            "system": system if isinstance(system, str) else None,
            "system_params": params if isinstance(params, dict) else None,
        }
    if spec in steppers.names():
        return spec, {}
    raise FileNotFoundError(
        f"MODEL {spec!r} is neither a model file nor a stepper name "
        f"(stepper names: {', '.join(steppers.names())})"
    )

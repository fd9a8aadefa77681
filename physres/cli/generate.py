"""``physres generate SYSTEM --out FILE [...]``: reference trajectories to an HDF5 file."""

from __future__ import annotations

from . import parse_params


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "generate",
        help="solve a system with scipy and write trajectories (HDF5 schema v1)",
        description="Sample initial states of SYSTEM, solve them with scipy's solve_ivp (or "
        "expm_multiply) and write the trajectories to FILE atomically. Defaults for "
        "the time span, save step, method and tolerances come from the system. A "
        "bead_chain at temperature > 0 (or given --stepper or --dt) is run by a "
        "seeded fixed-step Langevin (or deterministic) stepper instead.",
    )
    p.add_argument("system", metavar="SYSTEM", help="registered system name, e.g. lorenz63")
    p.add_argument("file", nargs="?", metavar="FILE", help="output .h5 file (or --out FILE)")
    p.add_argument("--out", metavar="FILE", help="output .h5 file (same as FILE)")
    p.add_argument(
        "--n-traj", type=int, default=64, metavar="N", help="number of trajectories (default 64)"
    )
    p.add_argument("--t-end", type=float, metavar="T", help="final time (default: system's)")
    p.add_argument("--dt-save", type=float, metavar="DT", help="save step (default: system's)")
    p.add_argument(
        "--method",
        metavar="M",
        help="RK23, RK45, DOP853, Radau, BDF, LSODA or expm (default: system's)",
    )
    p.add_argument("--rtol", type=float, metavar="R", help="relative tolerance")
    p.add_argument("--atol", type=float, metavar="A", help="absolute tolerance")
    p.add_argument(
        "--stepper",
        metavar="NAME",
        help="bead_chain: fixed-step reference instead of scipy (default at "
        "temperature > 0: euler_maruyama, or baoab when underdamped; rk4 "
        "for the gradient flow)",
    )
    p.add_argument(
        "--dt",
        type=float,
        metavar="DT",
        help="bead_chain: step of the fixed-step reference (default 1e-3; "
        "--dt-save must be a multiple)",
    )
    p.add_argument(
        "--workers", type=int, default=1, metavar="W", help="parallel processes (default 1)"
    )
    p.add_argument(
        "--seed", type=int, default=0, metavar="S", help="seed of the initial states (default 0)"
    )
    p.add_argument(
        "--param",
        action="append",
        metavar="KEY=VALUE",
        help="system parameter, repeatable (e.g. --param mu=1000)",
    )
    p.add_argument(
        "--compression",
        choices=("gzip", "lzf", "none"),
        default="gzip",
        help="compression of /states (default gzip)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from .. import data, systems

    if (args.file is None) == (args.out is None):
        raise ValueError("give the output file once: as FILE or as `--out FILE`")
    system = systems.get(args.system, **parse_params(args.param))
    path = data.generate(
        system,
        args.out or args.file,
        n_traj=args.n_traj,
        t_end=args.t_end,
        dt_save=args.dt_save,
        method=args.method,
        rtol=args.rtol,
        atol=args.atol,
        workers=args.workers,
        seed=args.seed,
        progress=not args.no_progress,
        compression=None if args.compression == "none" else args.compression,
        dt=args.dt,
        stepper=args.stepper,
    )
    with data.open(path) as f:
        print(
            f"wrote {path}: {len(f)} trajectories of {f.system_name}, {f.t.size} times, "
            f"state {f.state_shape}, reference {f.attrs['reference_method']} "
            f"({f.stats['wall_s'].sum():.3g} s solver time)"
        )
    return 0

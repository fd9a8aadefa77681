"""``physres info FILE``: a readable summary of a trajectory file."""

from __future__ import annotations

import json

import numpy as np


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "info",
        help="summarise a trajectory file (system, parameters, shapes, time grid, cost)",
        description="Check FILE against HDF5 schema v1 and against its system (rebuilt from "
        "the `system` and `system_params` attributes when registered: state "
        "shape and dtype), read every trajectory once (checksums) and print a "
        "summary.",
    )
    p.add_argument("file", metavar="FILE", help="a .h5 file written by `physres generate`")
    p.add_argument(
        "--no-verify", action="store_true", help="skip reading the states (metadata checks only)"
    )
    p.set_defaults(func=run)


def run(args) -> int:
    from .. import data

    with data.open(args.file) as f:
        f.check_system()
        if not args.no_verify:
            f.verify()
        print(summary(f))
    return 0


def summary(f) -> str:
    """The text printed by ``physres info``."""
    a, t = f.attrs, f.t
    uniform = np.allclose(np.diff(t), f.dt_save, rtol=1e-9, atol=0) if t.size > 1 else True
    lines = [
        f"file          {f.path}",
        f"format        {a['format']} v{a['format_version']} "
        f"(physres {a['physres_version']}, created {a['created']})",
        f"system        {f.system_name} {json.dumps(f.system_params)}",
        f"states        {len(f)} trajectories x {t.size} times x {f.state_shape}, "
        f"{f.states.dtype} ({_size(f.states)}, {f.states.compression or 'uncompressed'})",
        f"time grid     {t[0]:g} .. {t[-1]:g}, "
        + (f"dt_save {f.dt_save:g}" if uniform else "non-uniform"),
        f"reference     {a['reference_method']} rtol={a['rtol']:g} atol={a['atol']:g} "
        f"seed={a['seed']}",
    ]
    if "wall_s" in f.stats:
        wall, nfev = f.stats["wall_s"], f.stats.get("nfev", np.zeros(0))
        lines.append(
            f"cost          {wall.sum():.3g} s total, {wall.mean():.3g} s/trajectory "
            f"(max {wall.max():.3g} s)"
            + (f", {nfev.mean():.0f} f-evals/trajectory" if nfev.any() else "")
        )
    for name, ds in f.invariants.items():
        v = ds[()]
        drift = np.abs(v - v[:, :1]).max() / max(np.abs(v[:, 0]).max(), 1e-300)
        lines.append(f"invariant     {name}: max relative drift {drift:.2e}")
    for axis, values in f.grid.items():
        lines.append(
            f"grid          {axis}: {values.size} points {values.min():g} .. {values.max():g}"
        )
    return "\n".join(lines)


def _size(ds) -> str:
    n = ds.id.get_storage_size()
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024

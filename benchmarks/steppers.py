"""Stepper library vs torchdiffeq and scipy, side by side in one process.

1. Lorenz-63, batch 256, 1000 RK4 steps: physres ``rollout`` vs torchdiffeq's fixed-grid
   ``rk4`` vs a scipy ``solve_ivp`` (RK45) loop at matching error. Goal: physres ≤ 0.8×
   torchdiffeq's time.
2. Robertson, batch 1024, to t = 1e5: physres implicit steppers under ``integrate`` vs scipy
   ``BDF``/``Radau`` per-trajectory loops at equal final error. Goal: ≥ 10× faster than scipy.

    python benchmarks/steppers.py [--quick] [--json benchmarks/results/steppers.json]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from _common import best_time, machine, table, write_json
from scipy.integrate import solve_ivp
from torchdiffeq import odeint

import physres


def _max_rel_error(x: np.ndarray, ref: np.ndarray) -> float:
    return float(np.max(np.abs(x - ref) / np.maximum(np.abs(ref), 1e-300)))


def _scipy_loop(system, x0: np.ndarray, t_end: float, method: str, rtol: float, atol: float):
    jac = system.numpy_jacobian if method in ("BDF", "Radau") and system.jacobian else None
    out = []
    for y0 in x0:
        sol = solve_ivp(system.numpy_rhs, (0.0, t_end), y0, method=method, rtol=rtol, atol=atol,
                        t_eval=[t_end], jac=jac)
        if not sol.success:
            raise RuntimeError(sol.message)
        out.append(sol.y[:, -1])
    return np.array(out)


def _calibrate_scipy(system, x0, t_end, method, target_error, reference, atol_ratio):
    """Loosest rtol (decades 1e-3 … 1e-12) whose max error on ``x0`` is ≤ ``target_error``."""
    for rtol in 10.0 ** -np.arange(3, 13, 0.5):
        x = _scipy_loop(system, x0, t_end, method, rtol, rtol * atol_ratio)
        err = _max_rel_error(x, reference)
        if err <= target_error:
            return float(rtol), err
    return float(rtol), err


def lorenz(quick: bool) -> list[dict]:
    system = physres.systems.get("lorenz63")
    batch, n_steps, dt = 256, 1000, 0.002
    t_end = n_steps * dt
    x0 = system.sample_initial(batch, seed=0)
    n_ref = 16 if quick else 64  # trajectories checked against the tight reference
    reference = physres.reference.solve(system, x0[:n_ref], np.array([0.0, t_end]),
                                        method="DOP853", rtol=1e-13, atol=1e-13)[:, -1]
    step = physres.steppers.get("rk4", system.rhs)
    with torch.no_grad():
        t_phys, traj = best_time(lambda: physres.rollout(step, x0, dt, n_steps,
                                                         save_every=n_steps))
        grid = torch.tensor([0.0, t_end], dtype=torch.float64)
        t_tde, tde = best_time(lambda: odeint(system.rhs, x0, grid, method="rk4",
                                              options={"step_size": dt}))
    err_phys = _max_rel_error(traj[:n_ref, -1].numpy(), reference)
    err_tde = _max_rel_error(tde[-1, :n_ref].numpy(), reference)
    rtol, _ = _calibrate_scipy(system, x0[:8].numpy(), t_end, "RK45", err_phys, reference[:8],
                               1e-3)
    n_scipy = 32 if quick else batch
    start = time.perf_counter()
    xs = _scipy_loop(system, x0[:n_scipy].numpy(), t_end, "RK45", rtol, rtol * 1e-3)
    t_scipy = (time.perf_counter() - start) * batch / n_scipy
    err_scipy = _max_rel_error(xs[: min(n_ref, n_scipy)], reference[: min(n_ref, n_scipy)])
    return [
        {"method": "physres rk4 (rollout)", "wall_s": t_phys, "vs physres": 1.0,
         "max_rel_error": err_phys},
        {"method": "torchdiffeq rk4 (fixed grid)", "wall_s": t_tde, "vs physres": t_tde / t_phys,
         "max_rel_error": err_tde},
        {"method": f"scipy RK45 loop (rtol={rtol:.0e})"
                   + ("" if n_scipy == batch else f", x{batch // n_scipy} extrapolated"),
         "wall_s": t_scipy, "vs physres": t_scipy / t_phys, "max_rel_error": err_scipy},
    ]


def robertson(quick: bool) -> list[dict]:
    system = physres.systems.get("robertson")
    batch, t_end = 1024, 1e5
    x0 = system.sample_initial(batch, seed=0)
    n_ref = 8 if quick else 32
    reference = physres.reference.solve(system, x0[:n_ref], np.array([0.0, t_end]),
                                        method="Radau", rtol=1e-11, atol=1e-16)[:, -1]
    rows = []
    settings = [("crank_nicolson", 1e-5), ("backward_euler", 1e-4)]
    if not quick:
        settings.append(("implicit_midpoint", 1e-5))
    for name, rtol in settings:
        step = physres.steppers.get(name, system.rhs)
        with torch.no_grad():
            wall, sol = best_time(lambda step=step, rtol=rtol: physres.integrate(
                step, x0, (0.0, t_end), rtol=rtol, atol=1e-10, t_eval=[0.0, t_end]),
                repeat=1)
        err = _max_rel_error(sol.x[:n_ref, -1].numpy(), reference)
        rows.append({"method": f"physres {name} (rtol={rtol:.0e})", "wall_s": wall,
                     "max_rel_error": err, "steps": sol.stats["n_accepted"]})
    target = max(r["max_rel_error"] for r in rows if "crank_nicolson" in r["method"])
    t_physres = rows[0]["wall_s"]
    n_scipy = 32 if quick else 256
    for method in ["BDF", "Radau"]:
        rtol, _ = _calibrate_scipy(system, x0[:4].numpy(), t_end, method, target,
                                   reference[:4], 1e-6)
        start = time.perf_counter()
        xs = _scipy_loop(system, x0[:n_scipy].numpy(), t_end, method, rtol, 1e-10)
        wall = (time.perf_counter() - start) * batch / n_scipy
        rows.append({"method": f"scipy {method} loop (rtol={rtol:.0e}, x{batch // n_scipy} "
                               "extrapolated)", "wall_s": wall,
                     "max_rel_error": _max_rel_error(xs[:n_ref], reference)})
    for r in rows:
        r["vs physres CN"] = r["wall_s"] / t_physres
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer scipy trajectories")
    parser.add_argument("--json", default="benchmarks/results/steppers.json")
    args = parser.parse_args()
    info = machine()
    print("machine:", ", ".join(f"{k}={v}" for k, v in info.items()))
    lor = lorenz(args.quick)
    print("\nLorenz-63, batch 256, 1000 RK4 steps (dt = 0.002)")
    print(table(lor, ["method", "wall_s", "vs physres", "max_rel_error"]))
    ratio = lor[0]["wall_s"] / lor[1]["wall_s"]
    print(f"physres / torchdiffeq time: {ratio:.2f} (goal <= 0.8)")
    rob = robertson(args.quick)
    print("\nRobertson, batch 1024, t in [0, 1e5], equal final error")
    print(table(rob, ["method", "wall_s", "vs physres CN", "max_rel_error", "steps"]))
    speedup = min(r["wall_s"] for r in rob if "scipy" in r["method"]) / rob[0]["wall_s"]
    print(f"fastest scipy loop / physres crank_nicolson: {speedup:.1f}x (goal >= 10x)")
    write_json(args.json, {"machine": info, "lorenz": lor, "robertson": rob,
                           "lorenz_ratio_vs_torchdiffeq": ratio,
                           "robertson_speedup_vs_scipy": speedup})


if __name__ == "__main__":
    main()

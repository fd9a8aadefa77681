"""Wavefunction propagation, side by side.

1. Cost of one Crank–Nicolson (Cayley) step vs one explicit Euler step, N = 1024, batch 64
   (fd3 Dirichlet: tridiagonal; fd5 periodic: cyclic pentadiagonal). Target: ≤ 3×.
2. Harmonic-trap packets (64 trajectories, one period t = 2π): the step size at which
   split_operator and crank_nicolson reach final errors 1e-1 … 1e-4 (relative L2, vs the exact
   exponential of the same discrete H), their wall time per trajectory, and scipy's
   ``expm_multiply`` on the same sparse H (its accuracy is fixed near round-off: scipy has no
   public tolerance). Target: ≥ 50× faster per trajectory.
3. The residual (explicit Euler) step's norm growth at several Δt vs the closed form.

    python benchmarks/quantum.py [--quick] [--out benchmarks/results/quantum.json]

Torch runs on one thread (the machine is shared); prints ratios and writes JSON. No timing is
asserted anywhere.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from scipy.sparse.linalg import expm_multiply

import physres


def _median_time(fn, repeat: int, number: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        times.append((time.perf_counter() - start) / number)
    return float(np.median(times))


def bench_step_cost(repeat: int) -> dict:
    out = {}
    for kinetic, boundary in (("fd3", "dirichlet"), ("fd5", "periodic")):
        qs = physres.systems.get("schrodinger_1d", n=1024, x_min=-20.0, x_max=20.0,
                                 kinetic=kinetic, boundary=boundary)
        x = qs.sample_initial(64)
        euler = physres.steppers.get("euler", qs.rhs)
        cn = physres.steppers.get("crank_nicolson", qs.rhs)
        te, tc = [], []
        for _ in range(repeat):  # interleaved, so load changes hit both alike
            te.append(_median_time(lambda s=euler, x=x: s._step(x, 0.0, 1e-3), 3, 20))
            tc.append(_median_time(lambda s=cn, x=x: s._step(x, 0.0, 1e-3), 3, 20))
        te, tc = float(np.median(te)), float(np.median(tc))
        key = f"{kinetic}_{boundary}"
        out[key] = {"euler_ms": te * 1e3, "crank_nicolson_ms": tc * 1e3, "ratio": tc / te}
        print(f"step cost N=1024 batch 64 {key:16s} euler {te * 1e3:7.3f} ms   "
              f"crank_nicolson {tc * 1e3:7.3f} ms   ratio {tc / te:5.2f}  (target <= 3)")
    return out


def _rel_err(a, b):
    return float(((a - b).abs().pow(2).sum(-1) / b.abs().pow(2).sum(-1)).sqrt().max())


def bench_vs_expm_multiply(n_grid: int, batch: int, targets) -> dict:
    qs = physres.systems.get("schrodinger_1d", n=n_grid, x_min=-15.0, x_max=15.0,
                             kinetic="fd3")
    x = qs.sample_initial(batch, seed=1)
    t_end = 2 * math.pi
    op = qs.linear_operator(0.0)
    exact = op.expm_apply(t_end, x)  # exact exponential of the same discrete H
    A = op.sparse()
    B = x.numpy().T.copy()
    start = time.perf_counter()
    Y = expm_multiply(A * t_end, B)
    t_expm = time.perf_counter() - start
    err_expm = _rel_err(torch.from_numpy(Y.T.copy()), exact)
    out = {"n_grid": n_grid, "batch": batch, "t_end": t_end,
           "expm_multiply": {"wall_s_per_traj": t_expm / batch, "error": err_expm}}
    print(f"expm_multiply   n={n_grid} batch={batch}: {t_expm / batch * 1e3:8.2f} ms/traj, "
          f"error {err_expm:.1e}")
    for name in ("split_operator", "crank_nicolson"):
        step = physres.steppers.get(name, qs.rhs)
        rows = []
        n_steps = 8
        for target in targets:
            while True:  # double the steps until the final error meets the target
                dt = t_end / n_steps
                start = time.perf_counter()
                y = physres.rollout(step, x, dt, n_steps, save_every=n_steps)[:, -1]
                wall = time.perf_counter() - start
                err = _rel_err(y, exact)
                if err <= target or n_steps >= 2**16:
                    break
                n_steps *= 2
            speedup = (t_expm / batch) / (wall / batch)
            rows.append({"target_error": target, "n_steps": n_steps, "dt": dt, "error": err,
                         "wall_s_per_traj": wall / batch, "speedup_vs_expm_multiply": speedup})
            print(f"{name:15s} target {target:.0e}: {n_steps:6d} steps (dt {dt:.2e}), error "
                  f"{err:.1e}, {wall / batch * 1e3:8.2f} ms/traj, {speedup:7.2f}x vs "
                  "expm_multiply (target >= 50x)")
        out[name] = rows
    return out


def bench_euler_instability() -> dict:
    qs = physres.systems.get("schrodinger_1d", n=128, x_min=-10.0, x_max=10.0)
    x = qs.sample_initial(1, seed=2)
    H = (qs.linear_operator(0.0).dense() * 1j).numpy()
    E, Q = np.linalg.eigh(0.5 * (H + H.conj().T))
    c2 = np.abs(x.numpy() @ Q.conj()) ** 2 * qs.dx
    rows = []
    for dt in (1e-3, 1e-2, 5e-2):
        n = round(1.0 / dt)
        traj = physres.rollout(physres.steppers.get("euler", qs.rhs), x, dt, n)
        measured = float(qs.norm(traj[:, -1]))
        predicted = float((c2 * (1 + dt**2 * E**2) ** n).sum())
        rows.append({"dt": dt, "norm_at_t1": measured, "predicted": predicted})
        print(f"euler dt={dt:.0e}: norm at t=1 {measured:.6e} (closed form {predicted:.6e})")
    return {"rows": rows}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    parser.add_argument("--out", default="benchmarks/results/quantum.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = {
        "threads": 1,
        "step_cost": bench_step_cost(repeat=3 if args.quick else 7),
        "vs_expm_multiply": bench_vs_expm_multiply(256 if args.quick else 512,
                                                   16 if args.quick else 64,
                                                   (1e-1, 1e-2, 1e-3, 1e-4)),
        "euler_instability": bench_euler_instability(),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

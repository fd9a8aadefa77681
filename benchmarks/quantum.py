"""Wavefunction propagation, side by side.

1. Cost of one Crank–Nicolson (Cayley) step vs one explicit Euler step, N = 1024, batch 64
   (fd3 Dirichlet: tridiagonal; fd5 periodic: cyclic pentadiagonal). Target: ≤ 3×.
2. Harmonic-trap packets (64 trajectories, one period t = 2π): the step size at which
   split_operator and crank_nicolson reach final errors 1e-1 … 1e-4 (relative L2, vs the exact
   exponential of the same discrete H), their wall time per trajectory, and scipy's
   ``expm_multiply`` on the same sparse H, called once per trajectory (a vector) and once for
   the whole batch (a matrix: its best case). Its accuracy is fixed near round-off: scipy has
   no public tolerance. Target: ≥ 50× faster per trajectory.
3. The residual (explicit Euler) step's norm growth at several Δt vs the closed form.
4. Learned emulators of the harmonic trap (N = 256, dt = 0.005), trained by
   ``physres.training.fit`` on reference trajectories of random packets and rolled out 1000
   steps from 16 held-out packets: ``unitary_cayley`` (target: |norm − 1| < 1e-6 and fidelity
   > 0.99) beside the unconstrained conv1d ``resnet`` and Crank–Nicolson on the exact H.
5. (part ``split_cost``) One split-operator step vs one explicit Euler step on a Dirichlet grid
   (fd3, harmonic trap, batch 16, Δt = 1e-3 and 1e-2) at n = 128 … 8192, including sizes
   where 2n + 2 is a slow FFT length (n = 2048: 4098 = 2·3·683). The kinetic step is the image
   convolution of ``Grid1D.diagonal_propagator`` (a 7-smooth FFT length) wherever its kernel
   is short, else the sine-transform pair; the path is printed. Target: ≤ 2.5 Euler steps at
   every n.
6. (part ``cn_row``) The crank_nicolson row of 2. at 8192 steps (N = 512, 64 trajectories)
   against ``expm_multiply``, interleaved.

    python benchmarks/quantum.py [--quick] [--parts ...] [--out benchmarks/results/quantum.json]

Torch runs on one thread (the machine is shared); prints ratios and writes JSON. No timing is
asserted anywhere.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
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


def _best_time(fn, repeat: int, number: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - start) / number)
    return best


def _interleaved_best(fns, repeat: int, number: int) -> list[float]:
    """Best CPU time per call of each of ``fns``, timed in alternating blocks of ``number``."""
    for fn in fns:
        fn()
    best = [float("inf")] * len(fns)
    for _ in range(repeat):
        for k, fn in enumerate(fns):
            start = time.process_time()
            for _ in range(number):
                fn()
            best[k] = min(best[k], (time.process_time() - start) / number)
    return best


def bench_step_cost(repeat: int) -> dict:
    out = {}
    for kinetic, boundary in (("fd3", "dirichlet"), ("fd5", "periodic")):
        qs = physres.systems.get(
            "schrodinger_1d", n=1024, x_min=-20.0, x_max=20.0, kinetic=kinetic, boundary=boundary
        )
        x = qs.sample_initial(64)
        euler = physres.steppers.get("euler", qs.rhs)
        cn = physres.steppers.get("crank_nicolson", qs.rhs)
        te, tc = [], []
        for _ in range(repeat):  # interleaved, so load changes hit both alike
            te.append(_median_time(lambda s=euler, x=x: s.step(x, 0.0, 1e-3), 3, 20))
            tc.append(_median_time(lambda s=cn, x=x: s.step(x, 0.0, 1e-3), 3, 20))
        te, tc = float(np.median(te)), float(np.median(tc))
        key = f"{kinetic}_{boundary}"
        out[key] = {"euler_ms": te * 1e3, "crank_nicolson_ms": tc * 1e3, "ratio": tc / te}
        print(
            f"step cost N=1024 batch 64 {key:16s} euler {te * 1e3:7.3f} ms   "
            f"crank_nicolson {tc * 1e3:7.3f} ms   ratio {tc / te:5.2f}  (target <= 3)"
        )
    return out


def _rel_err(a, b):
    return float(((a - b).abs().pow(2).sum(-1) / b.abs().pow(2).sum(-1)).sqrt().max())


def bench_vs_expm_multiply(n_grid: int, batch: int, targets) -> dict:
    qs = physres.systems.get("schrodinger_1d", n=n_grid, x_min=-15.0, x_max=15.0, kinetic="fd3")
    x = qs.sample_initial(batch, seed=1)
    t_end = 2 * math.pi
    op = qs.linear_operator(0.0)
    exact = op.expm_apply(t_end, x)  # exact exponential of the same discrete H
    A = op.sparse()
    B = x.numpy().T.copy()
    start = time.perf_counter()
    Y = expm_multiply(A * t_end, B)
    t_batched = (time.perf_counter() - start) / batch
    err_expm = _rel_err(torch.from_numpy(Y.T.copy()), exact)
    n_single = min(batch, 8)
    start = time.perf_counter()
    for j in range(n_single):
        expm_multiply(A * t_end, B[:, j])
    t_single = (time.perf_counter() - start) / n_single
    out = {
        "n_grid": n_grid,
        "batch": batch,
        "t_end": t_end,
        "expm_multiply": {
            "wall_s_per_traj": t_single,
            "batched_wall_s_per_traj": t_batched,
            "error": err_expm,
        },
    }
    print(
        f"expm_multiply   n={n_grid}: {t_single * 1e3:8.2f} ms/traj one vector per call, "
        f"{t_batched * 1e3:8.2f} ms/traj as one ({n_grid}, {batch}) matrix; error "
        f"{err_expm:.1e}"
    )
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
            per_traj = wall / batch
            rows.append(
                {
                    "target_error": target,
                    "n_steps": n_steps,
                    "dt": dt,
                    "error": err,
                    "wall_s_per_traj": per_traj,
                    "speedup_vs_expm_multiply": t_single / per_traj,
                    "speedup_vs_batched_expm_multiply": t_batched / per_traj,
                }
            )
            print(
                f"{name:15s} target {target:.0e}: {n_steps:6d} steps (dt {dt:.2e}), error "
                f"{err:.1e}, {per_traj * 1e3:8.2f} ms/traj, {t_single / per_traj:7.2f}x vs "
                f"expm_multiply per vector (target >= 50x), {t_batched / per_traj:6.2f}x vs "
                "batched"
            )
        out[name] = rows
    return out


def bench_cn_row(n_grid: int, batch: int, n_steps: int, repeat: int) -> dict:
    """The crank_nicolson row at a fixed step count (part ``cn_row``): its error and time per
    trajectory against ``expm_multiply`` on one vector and on the whole batch, interleaved."""
    qs = physres.systems.get("schrodinger_1d", n=n_grid, x_min=-15.0, x_max=15.0, kinetic="fd3")
    x = qs.sample_initial(batch, seed=1)
    t_end = 2 * math.pi
    op = qs.linear_operator(0.0)
    exact = op.expm_apply(t_end, x)
    A = op.sparse()
    B = x.numpy().T.copy()
    step = physres.steppers.get("crank_nicolson", qs.rhs)
    t_cn, t_batched, t_single = [], [], []
    for _ in range(repeat):  # interleaved
        start = time.perf_counter()
        y = physres.rollout(step, x, t_end / n_steps, n_steps, save_every=n_steps, compile=False)[
            :, -1
        ]
        t_cn.append((time.perf_counter() - start) / batch)
        start = time.perf_counter()
        expm_multiply(A * t_end, B)
        t_batched.append((time.perf_counter() - start) / batch)
        start = time.perf_counter()
        for j in range(4):
            expm_multiply(A * t_end, B[:, j])
        t_single.append((time.perf_counter() - start) / 4)
    err = _rel_err(y, exact)
    out = {
        "n_grid": n_grid,
        "batch": batch,
        "n_steps": n_steps,
        "error": err,
        "crank_nicolson_s_per_traj": min(t_cn),
        "expm_multiply_batched_s_per_traj": min(t_batched),
        "expm_multiply_single_s_per_traj": min(t_single),
    }
    out["cn_over_batched"] = (
        out["crank_nicolson_s_per_traj"] / out["expm_multiply_batched_s_per_traj"]
    )
    print(
        f"crank_nicolson n={n_grid} batch {batch}: {n_steps} steps, error {err:.1e}, "
        f"{min(t_cn) * 1e3:.2f} ms/traj; expm_multiply {min(t_single) * 1e3:.2f} ms/traj "
        f"per vector, {min(t_batched) * 1e3:.2f} ms/traj batched; crank_nicolson / batched "
        f"= {out['cn_over_batched']:.2f}"
    )
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


def bench_emulators(n_grid: int, steps: int, resnet_steps: int, workdir: Path) -> dict:
    """Unitary Cayley vs unconstrained ResNet emulators of the harmonic trap (see 4. above)."""
    from physres.training import fit_for_steps

    dt, n_roll, sigma = 0.005, 1000, 0.7071067811865476
    spec = dict(n=n_grid, kinetic="fd3", x_min=-20.0, x_max=20.0)
    qs = physres.systems.get("schrodinger_1d", **spec)
    train = physres.systems.get("schrodinger_1d", **spec, sigma=sigma, k_max=1.0)
    data = physres.data.generate(
        train, workdir / "trap.h5", n_traj=32, t_end=1.0, dt_save=dt, seed=1234, progress=False
    )
    free = physres.systems.get("schrodinger_1d", **{**spec, "potential": "free"})
    rng = np.random.default_rng(7)  # held out: the training packets come from seed 1234
    psi0 = qs.gaussian_packet(
        -5 + rng.uniform(-1, 1, 16), rng.uniform(-0.2, 0.2, 16), np.full(16, sigma)
    )
    op = qs.linear_operator(0.0)
    every = 10
    ref = torch.stack(
        [op.expm_apply(k * every * dt, psi0) for k in range(n_roll // every + 1)], dim=1
    )
    torch.manual_seed(0)
    models = {
        "unitary_cayley": (
            physres.models.UnitaryCayleyEmulator(state_shape=(n_grid,), system=free, dt=dt),
            steps,
            5.0,
        ),
        "resnet": (
            physres.models.ResNetEmulator(
                state_shape=(n_grid,), complex_state=True, net="conv1d", width=32, layers=3, dt=dt
            ),
            resnet_steps,
            3e-3,
        ),
        "crank_nicolson (exact H)": (physres.steppers.get("crank_nicolson", qs.rhs), 0, None),
    }
    out = {"n_grid": n_grid, "dt": dt, "n_steps": n_roll, "packets": 16}
    for name, (model, n_opt, lr) in models.items():
        train_s = None
        if n_opt:
            result = fit_for_steps(
                model, data, n_opt, lr=lr, batch_size=64, normalize=False, progress=False
            )
            train_s = result.wall_s
        start = time.perf_counter()
        with torch.no_grad():
            try:
                traj = physres.rollout(model, psi0, dt, n_roll, save_every=every)
            except physres.DivergenceError as err:
                traj = err.trajectory
        wall = time.perf_counter() - start
        m = traj.shape[1]
        norm = qs.norm(traj.reshape(-1, n_grid)).reshape(16, m)
        fid = ((ref[:, :m].conj() * traj).sum(-1) * qs.dx).abs() ** 2
        row = {
            "train_steps": n_opt,
            "train_s": train_s,
            "rollout_s": wall,
            "steps_completed": (m - 1) * every,
            "max_norm_dev": float((norm - 1).abs().max()),
            "final_fidelity_min": float(fid[:, -1].min()) if m == ref.shape[1] else None,
            "final_fidelity_median": float(fid[:, -1].median()) if m == ref.shape[1] else None,
        }
        out[name] = row
        print(
            f"{name:25s} trained {n_opt:5d} steps ({train_s or 0:6.1f} s): max |norm-1| "
            f"{row['max_norm_dev']:.1e} (target < 1e-6), final fidelity min "
            f"{row['final_fidelity_min'] or float('nan'):.4f} (target > 0.99), median "
            f"{row['final_fidelity_median'] or float('nan'):.4f}"
        )
    return out


def bench_split_cost(sizes, batch: int, repeat: int, dts=(1e-3, 1e-2)) -> dict:
    from physres.systems.quantum.grid import _DIRECT_MAX_PRIME, _largest_prime_factor

    rows = []
    for dt in dts:
        for n in sizes:
            qs = physres.systems.get(
                "schrodinger_1d", n=n, x_min=-20.0, x_max=20.0, kinetic="fd3", boundary="dirichlet"
            )
            x = qs.sample_initial(batch)
            euler = physres.steppers.get("euler", qs.rhs)
            split = physres.steppers.get("split_operator", qs.rhs)
            number = max(3, 8192 // n)
            # CPU time (a loaded machine deschedules us mid-block), interleaved block by
            # block, the best of 5·repeat blocks of each
            te = _interleaved_best(
                [
                    lambda s=euler, x=x, dt=dt: s.step(x, 0.0, dt),
                    lambda s=split, x=x, dt=dt: s.step(x, 0.0, dt),
                ],
                5 * repeat,
                number,
            )
            te, ts = te
            band = split._static.band  # the kinetic step: image convolution or sine transforms
            lpf = _largest_prime_factor(n + 1)
            path = (
                f"images B={band}"
                if band is not None
                else "dst fft(2n+2)"
                if lpf <= _DIRECT_MAX_PRIME
                else "dst bluestein"
            )
            rows.append(
                {
                    "dt": dt,
                    "n": n,
                    "largest_prime_factor_of_n_plus_1": lpf,
                    "kinetic_path": path,
                    "euler_ms": te * 1e3,
                    "split_ms": ts * 1e3,
                    "ratio": ts / te,
                }
            )
            print(
                f"split_operator / euler, Dirichlet dt={dt:g} n={n:5d} (n+1 lpf {lpf:5d}, "
                f"{path:14s}): euler {te * 1e3:8.3f} ms, split {ts * 1e3:8.3f} ms, "
                f"ratio {ts / te:5.2f} (target <= 2.5)",
                flush=True,
            )
    return {"batch": batch, "rows": rows, "worst_ratio": max(r["ratio"] for r in rows)}


PARTS = ("step_cost", "vs_expm_multiply", "euler_instability", "emulators", "split_cost", "cn_row")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    parser.add_argument(
        "--parts", default=",".join(PARTS), help=f"comma-separated subset of {', '.join(PARTS)}"
    )
    parser.add_argument("--out", default="benchmarks/results/quantum.json")
    args = parser.parse_args()
    parts = args.parts.split(",")
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"--parts: unknown {unknown}; choose from {', '.join(PARTS)}")
    torch.set_num_threads(1)
    results = {"threads": 1}
    if "step_cost" in parts:
        results["step_cost"] = bench_step_cost(repeat=3 if args.quick else 7)
    if "vs_expm_multiply" in parts:
        results["vs_expm_multiply"] = bench_vs_expm_multiply(
            256 if args.quick else 512, 16 if args.quick else 64, (1e-1, 1e-2, 1e-3, 1e-4)
        )
    if "euler_instability" in parts:
        results["euler_instability"] = bench_euler_instability()
    if "split_cost" in parts:
        sizes = (128, 255, 256, 511, 512, 1023, 1024, 2047, 2048, 4095, 4096, 8191, 8192)
        results["split_cost"] = bench_split_cost(sizes, 16, 3 if args.quick else 5)
    if "cn_row" in parts:
        results["cn_row"] = bench_cn_row(512, 64, 8192, 2 if args.quick else 3)
    if "emulators" in parts:
        with tempfile.TemporaryDirectory() as workdir:
            results["emulators"] = bench_emulators(
                256, 400 if args.quick else 1500, 200 if args.quick else 1500, Path(workdir)
            )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

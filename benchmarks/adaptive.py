"""Adaptive integration: physres's embedded pairs against torchode, diffrax, torchdiffeq, scipy.

(a) Lorenz-63, batch 256, t in [0, 10], rtol 1e-8, atol 1e-10, dopri5 and tsit5: nfev per
    sample, wall time as ratios of interleaved runs (one thread each side), error against
    scipy DOP853 at rtol 1e-13. physres per sample and with the shared step; torchode (its
    per-sample integral controller); diffrax (jit + vmap; compilation excluded and reported);
    torchdiffeq dopri5 (one step for the whole batch). physres per sample eager and compiled
    (``compile=True``: the whole loop in one inductor while_loop; compilation excluded and
    reported, as diffrax's).
(b) Global error / tolerance on DETEST problems (Hull, Enright, Fellen & Sedgwick 1972,
    classes A-E) and scipy's test_ivp problems with exact solutions, for every physres stepper
    with an embedded estimate (plus rk4 under step doubling) against scipy RK23/RK45/DOP853
    at tol = rtol = atol = 1e-3, 1e-6, 1e-9; error measured at t1.

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/adaptive.py [--quick] [--lorenz-only]

A missing peer is skipped with a message. Results: benchmarks/results/adaptive.json.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time

os.environ.setdefault(
    "XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy.integrate import solve_ivp  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from _common import machine, table, write_json  # noqa: E402

import physres  # noqa: E402

torch.set_num_threads(1)
torch.set_default_dtype(torch.float64)

SIGMA, RHO, BETA = 10.0, 28.0, 8.0 / 3.0


def lorenz_torch(t, x):
    a, b, c = x[:, 0], x[:, 1], x[:, 2]
    return torch.stack([SIGMA * (b - a), a * (RHO - c) - b, a * b - BETA * c], dim=1)


# ----------------------------------------------------------------------------------------------
# (a) Lorenz-63 batch


def _reference_lorenz(x0: np.ndarray, t1: float) -> np.ndarray:
    """DOP853 at rtol 1e-13 on the whole batch as one vectorised system."""
    n = x0.shape[0]

    def f(t, y):
        y = y.reshape(n, 3)
        a, b, c = y[:, 0], y[:, 1], y[:, 2]
        return np.stack([SIGMA * (b - a), a * (RHO - c) - b, a * b - BETA * c], 1).ravel()

    sol = solve_ivp(f, (0.0, t1), x0.ravel(), method="DOP853", rtol=1e-13, atol=1e-13)
    return sol.y[:, -1].reshape(n, 3)


def _runner_physres(name, per_sample, x0, t1, rtol, atol, compile=False):
    """A run; with ``compile=True`` (run, compile_seconds): one stepper, compiled once here."""
    compiled_step = physres.steppers.get(name, lorenz_torch) if compile else None

    def run():
        step = compiled_step or physres.steppers.get(name, lorenz_torch)
        sol = physres.integrate(
            step,
            x0,
            (0.0, t1),
            rtol=rtol,
            atol=atol,
            t_eval=[0.0, t1],
            per_sample=per_sample,
            max_steps=1_000_000,
            compile=compile,
        )
        if compile and not sol.stats["compile"]["compiled"]:
            raise RuntimeError(f"not compiled: {sol.stats['compile']['fallback']}")
        if per_sample:
            nfev = float(sol.stats["nfev_per_sample"].double().mean())
        else:
            nfev = float(sol.stats["nfev"])  # every sample takes every shared step
        return sol.x[:, -1].numpy(), nfev

    if not compile:
        return run
    start = time.perf_counter()
    run()
    return run, time.perf_counter() - start  # compilation and one solve


def _runner_torchode(name, x0, t1, rtol, atol):
    try:
        import torchode as to
    except ImportError:
        return None
    term = to.ODETerm(lorenz_torch)
    method = {"dopri5": to.Dopri5, "tsit5": to.Tsit5}[name](term=term)
    controller = to.IntegralController(atol=atol, rtol=rtol, term=term)
    solver = to.AutoDiffAdjoint(method, controller)
    B = x0.shape[0]

    def run():
        problem = to.InitialValueProblem(y0=x0, t_start=torch.zeros(B), t_end=torch.full((B,), t1))
        sol = solver.solve(problem)
        if not bool((sol.status == 0).all()):
            raise RuntimeError(f"torchode status {sol.status.unique().tolist()}")
        return sol.ys[:, -1].numpy(), float(sol.stats["n_f_evals"].double().mean())

    return run


def _runner_torchdiffeq(x0, t1, rtol, atol):
    try:
        from torchdiffeq import odeint
    except ImportError:
        return None
    counter = [0]

    def f(t, x):
        counter[0] += 1
        return lorenz_torch(t, x)

    def run():
        counter[0] = 0
        ys = odeint(f, x0, torch.tensor([0.0, t1]), method="dopri5", rtol=rtol, atol=atol)
        return ys[-1].numpy(), float(counter[0])

    return run


def _runner_diffrax(name, x0, t1, rtol, atol):
    """(run, compile_seconds) or None; jit + vmap, one sample per lane."""
    try:
        import diffrax
        import jax
        import jax.numpy as jnp
    except ImportError:
        return None
    jax.config.update("jax_enable_x64", True)

    def f(t, y, args):
        a, b, c = y[0], y[1], y[2]
        return jnp.stack([SIGMA * (b - a), a * (RHO - c) - b, a * b - BETA * c])

    solver = {"dopri5": diffrax.Dopri5, "tsit5": diffrax.Tsit5}[name]()
    ctrl = diffrax.PIDController(rtol=rtol, atol=atol)

    def one(y0):
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(f),
            solver,
            0.0,
            t1,
            None,
            y0,
            stepsize_controller=ctrl,
            saveat=diffrax.SaveAt(t1=True),
            max_steps=1_000_000,
        )
        return sol.ys[-1], sol.stats["num_steps"], sol.result._value

    batched = jax.jit(jax.vmap(one))
    y0 = jnp.asarray(x0.numpy())
    start = time.perf_counter()
    jax.block_until_ready(batched(y0))
    compile_s = time.perf_counter() - start
    stages = 6  # FSAL: six new evaluations per step (accepted or rejected), plus the first

    def run():
        ys, steps, _ = jax.block_until_ready(batched(y0))
        return np.asarray(ys), float(np.mean(np.asarray(steps))) * stages + 1

    return run, compile_s


def lorenz_benchmark(batch: int, t1: float, rounds: int) -> dict:
    rtol, atol = 1e-8, 1e-10
    system = physres.systems.get("lorenz63")
    x0 = system.sample_initial(batch, seed=0).to(torch.float64)
    ref = _reference_lorenz(x0.numpy(), t1)
    scale = np.abs(ref).max(axis=1)
    results = {"batch": batch, "t1": t1, "rtol": rtol, "atol": atol, "methods": {}}
    for name in ["dopri5", "tsit5"]:
        runners = {
            f"physres {name} per-sample": _runner_physres(name, True, x0, t1, rtol, atol),
            f"physres {name} shared": _runner_physres(name, False, x0, t1, rtol, atol),
        }
        compiled_key = f"physres {name} per-sample compiled"
        runners[compiled_key], compiled_s = _runner_physres(
            name, True, x0, t1, rtol, atol, compile=True
        )
        ode = _runner_torchode(name, x0, t1, rtol, atol)
        if ode is None:
            print("torchode not installed: skipped")
        else:
            runners[f"torchode {name}"] = ode
        dfx = _runner_diffrax(name, x0, t1, rtol, atol)
        compile_s = None
        if dfx is None:
            print("diffrax/jax not installed: skipped")
        else:
            runners[f"diffrax {name}"], compile_s = dfx
        if name == "dopri5":
            tde = _runner_torchdiffeq(x0, t1, rtol, atol)
            if tde is None:
                print("torchdiffeq not installed: skipped")
            else:
                runners["torchdiffeq dopri5 (shared step)"] = tde
        times = {k: [] for k in runners}
        out = {}
        for _ in range(rounds):  # interleaved: every method once per round
            for key, run in runners.items():
                start = time.perf_counter()
                out[key] = run()
                times[key].append(time.perf_counter() - start)
        for key in runners:
            x, nfev = out[key]
            rel = np.abs(x - ref).max(axis=1) / scale
            results["methods"][key] = {
                "nfev_per_sample": nfev,
                "wall_s": statistics.median(times[key]),
                "error_median": float(np.median(rel)),
                "error_max": float(rel.max()),
            }
        if compile_s is not None:
            results["methods"][f"diffrax {name}"]["compile_s"] = compile_s
        results["methods"][compiled_key]["compile_s"] = compiled_s
        base = results["methods"][f"physres {name} per-sample"]
        for key in runners:  # ratios of the per-round times, median over rounds
            r = [
                a / b for a, b in zip(times[f"physres {name} per-sample"], times[key], strict=True)
            ]
            results["methods"][key]["physres_per_sample_time_ratio"] = statistics.median(r)
            results["methods"][key]["physres_per_sample_nfev_ratio"] = (
                base["nfev_per_sample"] / results["methods"][key]["nfev_per_sample"]
            )
            r = [a / b for a, b in zip(times[compiled_key], times[key], strict=True)]
            results["methods"][key]["physres_compiled_time_ratio"] = statistics.median(r)
    return results


# ----------------------------------------------------------------------------------------------
# (b) global error / tolerance


def _stack(xp, parts):
    return xp.stack(parts, -1)


def _t(t, xp):
    """``t`` as a tensor for torch fields (a float, or (batch,) per sample)."""
    return torch.as_tensor(t, dtype=torch.float64) if xp is torch else t


def _orbit(e):
    def f(t, y, xp):
        r3 = (y[..., 0] ** 2 + y[..., 1] ** 2) ** 1.5
        return _stack(xp, [y[..., 2], y[..., 3], -y[..., 0] / r3, -y[..., 1] / r3])

    return f, [1 - e, 0.0, 0.0, math.sqrt((1 + e) / (1 - e))]


def _chain(t, y, xp):
    parts = [-y[..., 0]] + [y[..., i - 1] - y[..., i] for i in range(1, 9)] + [y[..., 8]]
    return _stack(xp, parts)


# name: (f(t, y, xp), y0, (t0, t1), exact(t1) or None)
PROBLEMS = {
    "A1": (lambda t, y, xp: -y, [1.0], (0.0, 20.0), lambda t: np.array([math.exp(-t)])),
    "A3": (
        lambda t, y, xp: _stack(xp, [y[..., 0] * xp.cos(_t(t, xp))]),
        [1.0],
        (0.0, 20.0),
        lambda t: np.array([math.exp(math.sin(t))]),
    ),
    "A4": (
        lambda t, y, xp: y / 4 * (1 - y / 20),
        [1.0],
        (0.0, 20.0),
        lambda t: np.array([20 / (1 + 19 * math.exp(-t / 4))]),
    ),
    "B1": (
        lambda t, y, xp: _stack(
            xp, [2 * (y[..., 0] - y[..., 0] * y[..., 1]), -(y[..., 1] - y[..., 0] * y[..., 1])]
        ),
        [1.0, 3.0],
        (0.0, 20.0),
        None,
    ),
    "B5": (
        lambda t, y, xp: _stack(
            xp, [y[..., 1] * y[..., 2], -y[..., 0] * y[..., 2], -0.51 * y[..., 0] * y[..., 1]]
        ),
        [0.0, 1.0, 1.0],
        (0.0, 20.0),
        None,
    ),
    "C1": (_chain, [1.0] + [0.0] * 9, (0.0, 20.0), None),
    "D1": (*_orbit(0.1), (0.0, 20.0), None),
    "D5": (*_orbit(0.9), (0.0, 20.0), None),
    "E2": (
        lambda t, y, xp: _stack(xp, [y[..., 1], (1 - y[..., 0] ** 2) * y[..., 1] - y[..., 0]]),
        [2.0, 0.0],
        (0.0, 20.0),
        None,
    ),
    "E3": (
        lambda t, y, xp: _stack(
            xp, [y[..., 1], y[..., 0] ** 3 / 6 - y[..., 0] + 2 * xp.sin(2.78535 * _t(t, xp))]
        ),
        [0.0, 0.0],
        (0.0, 20.0),
        None,
    ),
    # scipy/integrate/_ivp/tests/test_ivp.py
    "scipy_linear": (
        lambda t, y, xp: _stack(xp, [-y[..., 0] - 5 * y[..., 1], y[..., 0] + y[..., 1]]),
        [0.0, 2.0],
        (0.0, 10.0),
        lambda t: np.array([-5 * math.sin(2 * t), 2 * math.cos(2 * t) + math.sin(2 * t)]),
    ),
    "scipy_rational": (
        lambda t, y, xp: _stack(
            xp, [y[..., 1] / t, y[..., 1] * (y[..., 0] + 2 * y[..., 1] - 1) / (t * (y[..., 0] - 1))]
        ),
        [1 / 3, 2 / 9],
        (5.0, 9.0),
        lambda t: np.array([t / (t + 10), 10 * t / (t + 10) ** 2]),
    ),
}


def _reference(f, y0, span, exact):
    if exact is not None:
        return exact(span[1])
    sol = solve_ivp(lambda t, y: f(t, y, np), span, y0, method="DOP853", rtol=2.5e-14, atol=1e-16)
    return sol.y[:, -1]


def _adaptive_steppers() -> list[str]:
    names = [
        n
        for n in physres.steppers.names(general=True)
        if physres.steppers.REGISTRY.resolve(n).error_order is not None
    ]
    return names + ["rk4"]  # rk4: step doubling, for comparison


IMPLICIT_MIN_TOL = 1e-6


def tolerance_table(tols) -> dict:
    rows = []
    for pname, (f, y0, span, exact) in PROBLEMS.items():
        ref = _reference(f, y0, span, exact)
        x0 = torch.tensor([y0])

        def field(t, x, f=f):
            return f(t, x, torch)

        for tol in tols:
            scale = tol + tol * np.abs(ref)
            row = {"problem": pname, "tol": tol}
            for method in ["RK23", "RK45", "DOP853"]:
                sol = solve_ivp(
                    lambda t, y, f=f: f(t, y, np), span, y0, method=method, rtol=tol, atol=tol
                )
                row[f"scipy {method}"] = float(np.max(np.abs(sol.y[:, -1] - ref) / scale))
                row[f"scipy {method} nfev"] = int(sol.nfev)
            for name in _adaptive_steppers():
                if tol < IMPLICIT_MIN_TOL and not physres.steppers.REGISTRY.resolve(name).explicit:
                    continue  # implicit pairs on non-stiff problems at 1e-9: minutes each
                step = physres.steppers.get(name, field)
                sol = physres.integrate(
                    step, x0, span, rtol=tol, atol=tol, max_steps=200_000, throw=False
                )
                x1 = sol.x[0, -1].numpy()
                ok = int(sol.status[0]) == 0
                row[name] = float(np.max(np.abs(x1 - ref) / scale)) if ok else math.nan
                row[f"{name} nfev"] = int(sol.stats["nfev"])
            rows.append(row)
    return {"rows": rows, "steppers": _adaptive_steppers()}


def summarise(rows, names) -> dict:
    """Ratio of each stepper's global error / tol to scipy's on the same problem and tol:
    against RK45, and against the scipy method of the same order (RK23 for order 3)."""
    out = {}
    for name in names:
        order = physres.steppers.REGISTRY.resolve(name).order
        same = "scipy RK23" if order <= 3 else "scipy RK45"
        entry = {"vs": same}
        for label, col in [("", same), ("_to_RK45", "scipy RK45")]:
            r = [
                row[name] / row[col]
                for row in rows
                if row[col] > 0 and math.isfinite(row.get(name, math.nan))
            ]
            entry[f"median_ratio{label}"] = statistics.median(r)
            entry[f"max_ratio{label}"] = max(r)
            entry[f"worse_than_3x{label and '_RK45'}"] = sum(v > 3 for v in r)
            entry["n"] = len(r)
        out[name] = entry
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="batch 32, t1 = 2, one round")
    parser.add_argument("--lorenz-only", action="store_true", help="part (a) only")
    parser.add_argument(
        "--out", default=os.path.join(os.path.dirname(__file__), "results", "adaptive.json")
    )
    args = parser.parse_args(argv)
    batch, t1, rounds = (32, 2.0, 1) if args.quick else (256, 10.0, 3)
    lorenz = lorenz_benchmark(batch, t1, rounds)
    cols = [
        "method",
        "nfev_per_sample",
        "wall_s",
        "error_median",
        "error_max",
        "physres_per_sample_nfev_ratio",
        "physres_per_sample_time_ratio",
        "physres_compiled_time_ratio",
        "compile_s",
    ]
    print(
        f"\n(a) Lorenz-63, batch {batch}, t1 = {t1}, rtol 1e-8, atol 1e-10 "
        "(ratios: physres per-sample / method)"
    )
    print(table([{"method": k, **v} for k, v in lorenz["methods"].items()], cols))
    if args.lorenz_only:
        write_json(args.out, {"machine": machine(), "lorenz": lorenz, "quick": args.quick})
        print(f"\nwrote {args.out}")
        return
    tols = [1e-3, 1e-6, 1e-9]
    tt = tolerance_table(tols)
    names = tt["steppers"]
    print("\n(b) global error / tol at t1 (rtol = atol = tol), physres vs scipy")
    print(table(tt["rows"], ["problem", "tol", "scipy RK23", "scipy RK45", "scipy DOP853", *names]))
    ratios = summarise(tt["rows"], names)
    print(
        "\nphysres global error / scipy's, over problems and tolerances (RK45, and the same "
        "pair: RK23 for third-order steppers)"
    )
    print(
        table(
            [{"stepper": k, **v} for k, v in ratios.items()],
            [
                "stepper",
                "vs",
                "median_ratio",
                "max_ratio",
                "worse_than_3x",
                "n",
                "median_ratio_to_RK45",
                "max_ratio_to_RK45",
                "worse_than_3x_RK45",
            ],
        )
    )
    write_json(
        args.out,
        {
            "machine": machine(),
            "lorenz": lorenz,
            "tolerance": tt,
            "ratio_to_rk45": ratios,
            "quick": args.quick,
        },
    )
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()

"""Learned integrators vs the scipy reference and physres RK4, side by side in one process.

For the harmonic oscillator and the pendulum: generate reference data (HDF5), train a ResNet
emulator and a Neural ODE stepping at dt = 10× the save step, roll each out 1000 steps from
held-out initial states, and score the relative L2 error per step against the closed-form
solution (trigonometric for the oscillator, Jacobi-elliptic for the pendulum). Goal: max over
the 1000 steps of the relative L2 error < 1e-2. Also reported: training wall time, rollout
throughput, the cost of the scipy reference for the same trajectories, and physres RK4 at the
coarsest dt (dt/m) whose error is at most the emulator's.

    python benchmarks/emulators.py [--quick] [--json benchmarks/results/emulators.json]

``--chaos lorenz63,lorenz96`` runs the chaotic systems instead (see ``_chaos.py``): physres
ResNet and Neural ODE trained by ``physres.training.fit`` on its defaults, an echo state network
(reservoirpy, 1000 nodes, ridge) and RK4 on the true field, on the same data and dt; and
``--defaults`` runs ``physres generate SYSTEM`` and ``physres train d.h5 --out m.pt --frame-step
10`` (nothing else set: every model and optimiser choice is the package's) for the oscillator,
the pendulum and Robertson, and scores the saved model files against the goals
(``DEFAULT_GOALS``); for Lorenz-63 (``--systems lorenz63``, also in the default list) no flag
at all, scored by valid prediction time and λ1 (``run_defaults_chaos``):

    python benchmarks/emulators.py --chaos lorenz63,lorenz96 --json benchmarks/results/chaos.json
    python benchmarks/emulators.py --defaults --json benchmarks/results/emulators_defaults.json
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _common import best_time, machine, table, write_json

import physres
from physres.validation.metrics import relative_l2

N_STEPS = 1000
BATCH = 16
POLISH = {"resnet": 200, "node": 100}  # Levenberg–Marquardt iterations (a NODE's cost more)


def reference(system, x0, t):
    if hasattr(system, "solution"):
        exact = system.solution(x0, torch.as_tensor(t)).numpy()
    else:
        exact = None
    start = time.perf_counter()
    ref = physres.reference.solve(system, x0, t)  # the package's reference (DOP853, 1e-10)
    wall = time.perf_counter() - start
    return (exact if exact is not None else ref), wall


def error(pred, ref) -> float:
    """Max over steps of the batch-mean relative L2 error."""
    return float(relative_l2(pred, ref, context=1).mean(0).max())


def rk4_at_same_error(system, x0, dt, target, ref):
    """Coarsest RK4 step dt/m (m = 1, 2, 4, ...) with error <= target over the same times."""
    step = physres.steppers.get("rk4", system.rhs)
    for m in (1, 2, 4, 8, 16, 32, 64, 128):
        wall, traj = best_time(
            lambda m=m: physres.rollout(step, x0, dt / m, N_STEPS * m, save_every=m), repeat=1
        )
        err = error(traj, ref)
        if err <= target:
            return {"rk4_substeps": m, "rk4_error": err, "rk4_s": wall}
    return {"rk4_substeps": None, "rk4_error": err, "rk4_s": wall}


def train(kind, path, epochs, polish, seed=0):
    """A 32-wide two-layer tanh MLP (float64, `linear_skip`): a few AdamW epochs, then
    Levenberg–Marquardt (`polish` iterations, default per model) on the two-step residuals of
    1500 training windows."""
    torch.manual_seed(seed)
    polish = POLISH[kind] if polish is None else polish
    opts = dict(width=32, dtype=torch.float64, net_options={"linear_skip": True})
    if kind == "node":
        opts.update(method="rk4", step_size=0.25)  # two RK4 (3/8) steps per dt = 0.5
    model = physres.training.model_for(path, kind, **opts)
    config = physres.training.TrainConfig(
        epochs=epochs,
        frame_step=10,
        unroll=2,
        lr=3e-3,
        batch_size=256,
        patience=None,
        min_lr_ratio=1e-2,
        polish_steps=polish,
        polish_method="lm",
        polish_windows=1500,
        progress=False,
        device="cpu",
        seed=seed,
    )
    start = time.perf_counter()
    result = physres.training.fit(model, path, config)
    return model, time.perf_counter() - start, result


def run_system(name, models, epochs, polish, workdir):
    system = physres.systems.get(name)
    path = Path(workdir) / f"{name}.h5"
    physres.data.generate(system, path, n_traj=64, seed=0, progress=False)
    dt = 10 * system.dt_save
    x0 = system.sample_initial(BATCH, seed=12345)  # held out: not the training seed
    t = np.arange(N_STEPS + 1) * dt
    ref, ref_wall = reference(system, x0, t)
    rows = []
    for kind in models:
        model, train_s, result = train(kind, path, epochs, polish)
        with torch.no_grad():
            wall, pred = best_time(lambda m=model: physres.rollout(m, x0, dt, N_STEPS))
        err = error(pred, ref)
        row = {
            "system": name,
            "model": kind,
            "dt": dt,
            "max_rel_l2": err,
            "final_rel_l2": float(relative_l2(pred, ref)[:, -1].mean()),
            "goal_met": err < 1e-2,
            "train_s": train_s,
            "train_steps": result.steps,
            "rollout_s": wall,
            "traj_steps_per_s": BATCH * N_STEPS / wall,
            "scipy_ref_s": ref_wall,
            "speedup_vs_scipy": ref_wall / wall,
        }
        with torch.no_grad():
            row.update(rk4_at_same_error(system, x0, dt, err, ref))
        row["speedup_vs_rk4"] = row["rk4_s"] / wall
        rows.append(row)
        print(table([row], list(row)), flush=True)
    return rows


# The no-flag goals: (system, steps of the scored rollout, goal of the max relative L2 error);
# None steps: the data's time span.
DEFAULT_GOALS = {
    "harmonic_oscillator": (N_STEPS, 1e-3),
    "pendulum": (N_STEPS, 1e-2),
    "robertson": (None, 1e-2),
    "lorenz63": (None, None),  # scored by VPT and λ1: run_defaults_chaos
}
MASS_GOAL = 1e-12  # Robertson: |Σy(t) − Σy(0)| at most
# Lorenz-63 (no flag at all, dt = dt_save = 0.01): median VPT over N_CHAOS_TEST held-out
# states at least VPT_GOAL Lyapunov times (and at least the echo state network's, ~11 in
# _chaos.py), |λ1 − 0.9056| / 0.9056 at most LAMBDA_GOAL
VPT_GOAL, LAMBDA_GOAL, N_CHAOS_TEST = 15.0, 0.03, 32


def run_defaults(name, workdir, extra=()):
    """``physres generate NAME`` and ``physres train d.h5 --out m.pt --frame-step 10`` with no
    other flag (the CLI in this process, one thread), then the saved model file is loaded
    and rolled out from held-out initial states (another seed than the data's) against the
    exact solution (oscillator, pendulum) or DOP853 / Radau at rtol 1e-12. ``extra``: more
    `physres train` flags (to measure one option against the defaults)."""
    from physres.cli import main as cli

    if name == "lorenz63":
        return run_defaults_chaos(workdir, extra)
    system = physres.systems.get(name)
    path, out = Path(workdir) / f"{name}.h5", Path(workdir) / f"{name}.pt"
    assert cli(["generate", name, "--out", str(path), "--no-progress"]) == 0
    torch.manual_seed(0)
    start, cpu = time.perf_counter(), time.process_time()
    assert (
        cli(["train", str(path), "--out", str(out), "--frame-step", "10", "--no-progress", *extra])
        == 0
    )
    train_s, train_cpu_s = time.perf_counter() - start, time.process_time() - cpu
    model = physres.load(out)
    dt = 10 * system.dt_save
    n_steps, goal = DEFAULT_GOALS[name]
    n_steps = n_steps or int(round(system.t_end / dt))
    x0 = system.sample_initial(BATCH, seed=12345)  # held out: not the data's seed
    t = np.arange(n_steps + 1) * dt
    if hasattr(system, "solution"):
        ref = system.solution(x0, torch.as_tensor(t)).numpy()
    else:
        method = "Radau" if name == "robertson" else "DOP853"
        ref = physres.reference.solve(
            system, x0, t, method=method, rtol=1e-12, atol=1e-16 if name == "robertson" else 1e-12
        )
    with torch.no_grad():
        pred = physres.rollout(model, x0, dt, n_steps).double().numpy()
    rel = relative_l2(pred, ref)  # (batch, n_steps)
    info = model.training_info
    row = {
        "system": name,
        "extra": " ".join(extra),
        "model": type(model).name,
        "dt": dt,
        "steps": n_steps,
        "max_rel_l2": float(rel.max()),
        "max_mean_rel_l2": float(rel.mean(0).max()),
        "goal": goal,
        "train_s": train_s,
        "train_cpu_s": train_cpu_s,
    }
    met = row["max_rel_l2"] < goal
    if name == "robertson":
        row["max_mass_drift"] = float(np.abs(pred.sum(-1) - pred[:, :1].sum(-1)).max())
        met = met and row["max_mass_drift"] <= MASS_GOAL
    row["goal_met"] = met
    row["epochs"] = info["epochs"]
    row["polish"] = {
        k: info["polish"].get(k) for k in ("method", "windows", "iterations", "stopped", "kept")
    }
    row["choices"] = info.get("model", {})
    print(
        table(
            [{k: v for k, v in row.items() if k not in ("choices", "polish", "epochs")}],
            [k for k in row if k not in ("choices", "polish", "epochs")],
        ),
        flush=True,
    )
    print(
        f"  epochs: {row['epochs']}\n  polish: {row['polish']}\n  model: {row['choices']}",
        flush=True,
    )
    return [row]


def run_defaults_chaos(workdir, extra=()):
    """``physres generate lorenz63`` and ``physres train d.h5 --out m.pt`` with no flag at all
    (dt = dt_save = 0.01); the saved model is scored like the emulators of ``_chaos.py`` (its
    VPT and λ1 helpers): predictions from t = 5 of N_CHAOS_TEST held-out trajectories (seed
    12345, on the attractor) over 30 time units, VPT at threshold 0.4 in Lyapunov times
    1/0.9056, and the model's own λ1 (Benettin, 20 000 steps from 8 of those states)."""
    import _chaos

    from physres.cli import main as cli

    name, setup = "lorenz63", _chaos.SETUPS["lorenz63"]
    system = physres.systems.get(name)
    path, out = Path(workdir) / f"{name}.h5", Path(workdir) / f"{name}.pt"
    test_path = Path(workdir) / f"{name}_test.h5"
    assert cli(["generate", name, "--out", str(path), "--no-progress"]) == 0
    torch.manual_seed(0)
    start, cpu = time.perf_counter(), time.process_time()
    assert cli(["train", str(path), "--out", str(out), "--no-progress", *extra]) == 0
    train_s, train_cpu_s = time.perf_counter() - start, time.process_time() - cpu
    model = physres.load(out).eval()
    dt = model.dt
    i0 = int(round(_chaos.T_START / dt))
    n_pred = int(round(setup["horizon"] / dt))
    physres.data.generate(
        system,
        test_path,
        n_traj=N_CHAOS_TEST,
        t_end=_chaos.T_START + setup["horizon"],
        dt_save=dt,
        seed=12345,
        progress=False,
    )
    with physres.data.open(test_path) as f:
        ref = np.asarray(f.states[:, i0 : i0 + n_pred + 1])
    with physres.data.open(path) as f:
        train = np.asarray(f.states[:, i0:])
    scale = float(np.sqrt(np.mean(np.sum(train.reshape(-1, 3) ** 2, -1))))
    x0 = torch.from_numpy(ref[:, 0].copy())
    pred = _chaos._rollout(model, x0, dt, n_pred)
    vpt = _chaos._vpt(pred, ref, scale, dt, setup["lam_ref"]) if pred is not None else None
    lam = _chaos._lyap(model, x0[:8], dt, 20_000)
    info = model.training_info
    row = {
        "system": name,
        "extra": " ".join(extra),
        "model": type(model).name,
        "dt": dt,
        "steps": n_pred,
        "vpt_median": None if vpt is None else float(np.median(vpt)),
        "vpt_min": None if vpt is None else float(vpt.min()),
        "lambda1": lam,
        "lambda1_rel_err": abs(lam - setup["lam_ref"]) / setup["lam_ref"],
        "goal": f"VPT >= {VPT_GOAL:g}, |dλ1| <= {LAMBDA_GOAL:g}",
        "train_s": train_s,
        "train_cpu_s": train_cpu_s,
    }
    row["goal_met"] = (
        vpt is not None and row["vpt_median"] >= VPT_GOAL and row["lambda1_rel_err"] <= LAMBDA_GOAL
    )
    row["polish"] = {k: info["polish"].get(k) for k in ("method", "reason")}
    row["choices"] = info.get("model", {})
    shown = [k for k in row if k not in ("choices", "polish")]
    print(table([{k: row[k] for k in shown}], shown), flush=True)
    print(f"  polish: {row['polish']}\n  model: {row['choices']}", flush=True)
    return [row]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer epochs (a smoke run)")
    parser.add_argument("--json", default=str(Path(__file__).parent / "results" / "emulators.json"))
    parser.add_argument("--systems", default="harmonic_oscillator,pendulum")
    parser.add_argument("--models", default="resnet,node")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument(
        "--polish",
        type=int,
        default=None,
        help="Levenberg–Marquardt iterations after AdamW (default: resnet 200, node 100; 0: none)",
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (tiny networks run fastest on one)"
    )
    parser.add_argument(
        "--chaos", default=None, help="comma-separated chaotic systems (lorenz63, lorenz96)"
    )
    parser.add_argument("--no-esn", action="store_true", help="skip the echo state network")
    parser.add_argument(
        "--esn-only", action="store_true", help="chaos: only RK4 and the echo state network"
    )
    parser.add_argument(
        "--defaults",
        action="store_true",
        help="`physres train` with no flag but --frame-step 10 (oscillator, "
        "pendulum, robertson unless --systems)",
    )
    parser.add_argument(
        "--extra", default="", help="--defaults: more `physres train` flags, e.g. '--noise 0.001'"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.chaos:
        import _chaos

        rows = []
        with tempfile.TemporaryDirectory() as workdir:
            for name in args.chaos.split(","):
                rows += _chaos.run(
                    name,
                    Path(workdir),
                    quick=args.quick,
                    esn=not args.no_esn,
                    physres_models=not args.esn_only,
                )
        print()
        print(_chaos.as_markdown(rows))
        write_json(
            args.json,
            {
                "benchmark": "emulators_chaos",
                "quick": args.quick,
                "machine": machine(),
                "load": os.getloadavg(),
                "rows": rows,
            },
        )
        return
    if args.defaults:
        rows = []
        names = (
            args.systems
            if args.systems != parser.get_default("systems")
            else ",".join(DEFAULT_GOALS)
        )
        with tempfile.TemporaryDirectory() as workdir:
            for name in names.split(","):
                rows += run_defaults(name, workdir, args.extra.split())
        columns = ["system", "model", "max_rel_l2", "vpt_median", "vpt_min", "lambda1"]
        columns += ["goal", "goal_met", "train_s", "train_cpu_s"]
        print(table([{c: r.get(c) for c in columns} for r in rows], columns))
        write_json(
            args.json,
            {
                "benchmark": "emulators_defaults",
                "machine": machine(),
                "load": os.getloadavg(),
                "rows": rows,
            },
        )
        return
    epochs = args.epochs or (1 if args.quick else 3)
    polish = args.polish if args.polish is not None or not args.quick else 10
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for name in args.systems.split(","):
            rows += run_system(name, args.models.split(","), epochs, polish, workdir)
    columns = [
        "system",
        "model",
        "max_rel_l2",
        "goal_met",
        "train_s",
        "traj_steps_per_s",
        "speedup_vs_scipy",
        "rk4_substeps",
        "speedup_vs_rk4",
    ]
    print()
    print(table(rows, columns))
    write_json(
        args.json,
        {
            "benchmark": "emulators",
            "epochs": epochs,
            "polish": POLISH if polish is None else polish,
            "n_steps": N_STEPS,
            "batch": BATCH,
            "machine": machine(),
            "rows": rows,
        },
    )


if __name__ == "__main__":
    main()

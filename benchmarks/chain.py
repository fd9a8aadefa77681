"""Chain emulators side by side: staple edges vs none, and emulator vs Langevin reference.

1. Rollout error on a stapled chain's gradient flow: the chain-graph emulator with staple
   edges, the same network without them, and a plain MLP ResNet, trained on the same HDF5
   trajectories (rk4 reference at dt_save/20). Target: staples ≥ 2× lower error.
2. Sampling at temperature: the chain-graph emulator with Euler–Maruyama noise, stepping at
   ``--speedup`` (default 50) × the Langevin step, against the Euler–Maruyama reference over
   the same simulated time: wall time and the Rg-distribution distance W1 / mean Rg (a second
   reference run with another seed gives the reference's own sampling noise).
   Target: ≥ 10× faster with W1 within 5 % of the mean Rg.

Run: ``python benchmarks/chain.py [--quick] [--train-steps N] [--speedup S] [--json PATH]``.
Prints a table and writes JSON (default: benchmarks/chain.json).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from scipy.stats import wasserstein_distance

import physres
from physres.scenarios import fit_for_steps, summary_table
from physres.systems.chain import radius_of_gyration, simulate


def _graph(n, staple, use_staples, width, temperature=0.0):
    torch.manual_seed(0)
    return physres.models.ChainGraphEmulator(state_shape=(n, 3), staples=[staple],
                                             use_staples=use_staples, width=width, depth=3,
                                             temperature=temperature, seed=7)


def staple_edges(args, tmp: Path) -> list[dict]:
    n, staple = args.n_beads, (1, args.n_beads - 2)
    system = physres.systems.get("bead_chain", n_beads=n, target="hairpin", staples=[staple])
    data = simulate(system, tmp / "flow.h5", n_traj=args.n_traj, t_end=args.t_flow,
                    dt=0.001, dt_save=0.02, stepper="rk4", seed=0, progress=False)
    test = system.sample_initial(16, seed=123)
    steps = round(args.t_flow / 0.02)
    with torch.no_grad():
        ref = physres.rollout(physres.steppers.get("rk4", system.rhs), test, 0.001, 20 * steps,
                              save_every=20)
    rows = []
    for name in ("graph_staples", "graph_no_staples", "mlp_resnet"):
        if name == "mlp_resnet":
            torch.manual_seed(0)
            model = physres.models.ResNetEmulator(state_shape=(n, 3), width=4 * args.width,
                                                  depth=2)
        else:
            model = _graph(n, staple, name == "graph_staples", args.width)
        t0 = time.perf_counter()
        fit_for_steps(model, data, args.train_steps, unroll=args.unroll, batch_size=64,
                      device="cpu", progress=False)
        wall = time.perf_counter() - t0
        model.eval()
        with torch.no_grad():
            pred = physres.rollout(model, test, 0.02, steps)
        err = ((pred - ref).flatten(1).norm(dim=1) / ref.flatten(1).norm(dim=1)).mean()
        rows.append({"benchmark": "rollout", "model": name, "rel_l2": float(err),
                     "train_s": wall})
    base = rows[0]["rel_l2"]
    for r in rows:
        r["ratio_to_staples"] = r["rel_l2"] / base
    return rows


def sampling(args, tmp: Path) -> list[dict]:
    n, staple, kt, dt = args.n_beads, (1, args.n_beads - 2), 0.5, 2e-3
    system = physres.systems.get("bead_chain", n_beads=n, target="hairpin", staples=[staple],
                                 temperature=kt)
    big = args.speedup * dt
    data = simulate(system, tmp / "hot.h5", n_traj=args.n_traj, t_end=args.t_hot, dt=dt,
                    dt_save=big, seed=1, progress=False)
    model = _graph(n, staple, True, args.width, temperature=kt)
    fit_for_steps(model, data, args.train_steps, unroll=1, batch_size=64, device="cpu",
                  progress=False)
    model.eval()
    x0 = system.sample_initial(args.n_chains, seed=5)
    n_big = round(args.t_hot / big)

    def rg_late(traj):
        return radius_of_gyration(traj[:, traj.shape[1] // 2:]).reshape(-1).numpy()

    timings, samples = {}, {}
    for label, stepper, step_dt, n_steps, every in (
            ("langevin", physres.steppers.get("euler_maruyama", system.rhs, seed=2), dt,
             n_big * args.speedup, args.speedup),
            ("langevin_seed2", physres.steppers.get("euler_maruyama", system.rhs, seed=3), dt,
             n_big * args.speedup, args.speedup),
            ("emulator", model, big, n_big, 1)):
        t0 = time.perf_counter()
        with torch.no_grad():
            traj = physres.rollout(stepper, x0, step_dt, n_steps, save_every=every)
        timings[label] = time.perf_counter() - t0
        samples[label] = rg_late(traj)
    mean_rg = float(samples["langevin"].mean())
    rows = []
    for label in ("langevin_seed2", "emulator"):
        w1 = wasserstein_distance(samples[label], samples["langevin"])
        rows.append({"benchmark": "sampling", "model": label, "wall_s": timings[label],
                     "speedup": timings["langevin"] / timings[label],
                     "w1_over_mean_rg": w1 / mean_rg})
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes (a few minutes on CPU)")
    p.add_argument("--train-steps", type=int, default=None, help="override optimiser steps")
    p.add_argument("--speedup", type=int, default=None,
                   help="emulator step / Langevin step (default 50)")
    p.add_argument("--json", default=str(Path(__file__).with_suffix(".json")))
    args = p.parse_args(argv)
    size = dict(n_beads=12, n_traj=24, t_flow=1.0, t_hot=4.0, width=16, train_steps=150,
                unroll=2, n_chains=32, speedup=50) if args.quick else \
        dict(n_beads=16, n_traj=128, t_flow=2.0, t_hot=20.0, width=32, train_steps=3000,
             unroll=4, n_chains=128, speedup=50)
    if args.train_steps is not None:
        size["train_steps"] = args.train_steps
    if args.speedup is not None:
        size["speedup"] = args.speedup
    for k, v in size.items():
        setattr(args, k, v)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as d:
        rows = staple_edges(args, Path(d)) + sampling(args, Path(d))
    print(summary_table(rows))
    Path(args.json).write_text(json.dumps({"config": size, "rows": rows}, indent=2) + "\n")
    return rows


if __name__ == "__main__":
    main()

"""The stapled chain emulator on the ``chain_fold`` scenario's settings, with diagnostics.

Reproduces the emulator part of ``scenarios/chain_fold.py`` with the same physres calls:
``physres.data.generate`` writes rk4 gradient-flow trajectories of the 12-bead Gō hairpin with
staple (1, 9) from random coils; train ``ChainForceEmulator`` (with and without the staple
edges) and an MLP ResNet with ``fit_for_steps``, roll out from unseen coils and
report, per emulator:

* ``rollout_rel_l2``: relative L2 error against rk4 over the whole rollout (mean over coils),
  and its median and maximum over the coils;
* ``one_step_rel``: error of one emulator step from the reference frames, relative to the
  reference's own displacement over that step (what the fit leaves);
* ``final_q`` and its gap to the reference's, ``rg_w1_rel`` (W1 of Rg over the second half,
  relative to the reference's mean Rg);
* ``speedup_vs_rk4``: CPU time of the rk4 reference rollout over the emulator's (best of
  interleaved runs in this process, one thread).

``--floor`` adds the emulator's form with the exact laws: ``substeps`` Euler sub-steps of the
chain's own force per step, the error a perfectly learned ChainForceEmulator would have.

Run: ``python benchmarks/chain_emulator.py [--preset quick|full] [--kinds ...] [--floor]``
(``--set train_steps=1000``, ``--model '{"angles": false}'``, ``--seeds 1 2`` for the
ablations in docs/benchmarks.md); prints a
table and writes JSON (default: benchmarks/results/chain_emulator_<preset>.json).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import wasserstein_distance

import physres
from physres import runner
from physres.systems.chain import radius_of_gyration
from physres.training import fit_for_steps

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine, table, write_json  # noqa: E402

# The scenario's Config values (scenarios/chain_fold.py, QUICK and FULL), emulator part only.
PRESETS = {
    "quick": dict(
        n_beads=12,
        staple=(1, 9),
        n_traj=64,
        t_flow=1.0,
        dt_save=0.02,
        n_test=6,
        width=16,
        train_steps=300,
        unroll=2,
        lr=1e-2,
        cutoff=2.5,
        substeps=4,
    ),
    "full": dict(
        n_beads=12,
        staple=(1, 9),
        n_traj=128,
        t_flow=1.0,
        dt_save=0.02,
        n_test=16,
        width=32,
        train_steps=3000,
        unroll=4,
        lr=1e-2,
        cutoff=2.5,
        substeps=4,
    ),
}
TARGETS = {"rollout_rel_l2": 0.05, "final_q_diff": 0.05, "rg_w1_rel": 0.02}
KINDS = ("graph_staples", "graph_no_staples", "mlp_resnet")


def make_model(kind, cfg, extra, seed=0):
    torch.manual_seed(seed)
    shape = (cfg["n_beads"], 3)
    if kind == "mlp_resnet":
        return physres.models.ResNetEmulator(state_shape=shape, width=4 * cfg["width"], depth=2)
    return physres.models.ChainForceEmulator(
        state_shape=shape,
        staples=[cfg["staple"]],
        use_staples=kind == "graph_staples",
        cutoff=cfg["cutoff"],
        substeps=cfg["substeps"],
        width=cfg["width"],
        **extra,
    )


def run(
    cfg, kinds, extra, tmp: Path, seeds=(0,), save=None, floor=False
) -> tuple[list[dict], dict]:
    system = physres.systems.get(
        "bead_chain",
        n_beads=cfg["n_beads"],
        target="hairpin",
        staples=[cfg["staple"]],
        initial="coil",
    )
    data = tmp / "chain_flow.h5"
    physres.data.generate(
        system,
        data,
        n_traj=cfg["n_traj"],
        t_end=cfg["t_flow"],
        dt=cfg["dt_save"] / 20,
        dt_save=cfg["dt_save"],
        stepper="rk4",
        seed=3,
        progress=False,
    )
    test = system.sample_initial(cfg["n_test"], seed=99)
    n_steps = round(cfg["t_flow"] / cfg["dt_save"])
    rk4 = physres.steppers.get("rk4", system.rhs)

    def reference():
        return physres.rollout(rk4, test, cfg["dt_save"] / 20, 20 * n_steps, save_every=20)

    with torch.no_grad():
        ref = reference()
    ref_q = float(system.folding(ref)["q"].mean(0)[-1])
    ref_rg = radius_of_gyration(ref[:, n_steps // 2 :]).reshape(-1).numpy()
    rows = []
    if floor:  # the emulator's form with the exact laws: K Euler sub-steps of the true force
        k = cfg["substeps"]
        euler = physres.steppers.get("euler", system.rhs)
        with torch.no_grad():
            pred = physres.rollout(euler, test, cfg["dt_save"] / k, k * n_steps, save_every=k)
        per = ((pred - ref).flatten(1).norm(dim=1) / ref.flatten(1).norm(dim=1)).numpy()
        rg = radius_of_gyration(pred[:, n_steps // 2 :]).reshape(-1).numpy()
        q = float(system.folding(pred)["q"].mean(0)[-1])
        rows.append(
            {
                "emulator": f"euler_true_force_x{k}",
                "rollout_rel_l2": float(per.mean()),
                "median": float(np.median(per)),
                "max": float(per.max()),
                "final_q": q,
                "q_diff": q - ref_q,
                "rg_w1_rel": float(wasserstein_distance(rg, ref_rg)) / float(ref_rg.mean()),
                "per_coil": per.round(4).tolist(),
            }
        )
    for kind in kinds:
        for seed in seeds:
            model = make_model(kind, cfg, extra if kind != "mlp_resnet" else {}, seed)
            t0 = time.perf_counter()
            result = fit_for_steps(
                model,
                data,
                cfg["train_steps"],
                unroll=cfg["unroll"],
                batch_size=64,
                lr=cfg["lr"],
                device="cpu",
                progress=False,
            )
            wall = time.perf_counter() - t0
            model = model.to("cpu").eval()
            if save:
                physres.save(model, Path(save) / f"{kind}_{seed}.pt")
            with torch.no_grad():
                pred = physres.rollout(model, test, cfg["dt_save"], n_steps)
                frames = ref[:, :-1].reshape(-1, *ref.shape[2:])
                nxt = ref[:, 1:].reshape(-1, *ref.shape[2:])
                one = model(frames, 0.0, cfg["dt_save"])
                one_step = float(
                    (one - nxt).flatten(1).norm(dim=1).sum()
                    / (nxt - frames).flatten(1).norm(dim=1).sum()
                )
                sp = runner.cpu_time_ratio(
                    reference, lambda m=model: physres.rollout(m, test, cfg["dt_save"], n_steps)
                )
            per = ((pred - ref).flatten(1).norm(dim=1) / ref.flatten(1).norm(dim=1)).numpy()
            rg = radius_of_gyration(pred[:, n_steps // 2 :]).reshape(-1).numpy()
            q = float(system.folding(pred)["q"].mean(0)[-1])
            w1 = float(wasserstein_distance(rg, ref_rg))
            loss = [h["loss"] for h in result.history]
            rows.append(
                {
                    "emulator": kind,
                    "seed": seed,
                    "rollout_rel_l2": float(per.mean()),
                    "median": float(np.median(per)),
                    "max": float(per.max()),
                    "one_step_rel": one_step,
                    "final_q": q,
                    "q_diff": q - ref_q,
                    "rg_w1_rel": w1 / float(ref_rg.mean()),
                    "speedup_vs_rk4": sp,
                    "final_loss": float(np.mean(loss[-20:])) if loss else None,
                    "train_s": wall,
                    "per_coil": per.round(4).tolist(),
                    "loss_trace": [float(v) for v in loss[:: max(1, len(loss) // 20)]],
                }
            )
            print(
                table(
                    [rows[-1]],
                    [
                        "emulator",
                        "seed",
                        "rollout_rel_l2",
                        "median",
                        "max",
                        "one_step_rel",
                        "final_q",
                        "q_diff",
                        "rg_w1_rel",
                        "speedup_vs_rk4",
                        "final_loss",
                        "train_s",
                    ],
                ),
                flush=True,
            )
    return rows, {"reference_final_q": ref_q, "reference_rg_mean": float(ref_rg.mean())}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", choices=tuple(PRESETS), default="quick")
    p.add_argument("--kinds", nargs="*", choices=KINDS, default=list(KINDS))
    p.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=[0],
        help="torch seeds of the initialisation (0: the scenario's)",
    )
    p.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="override a preset value, e.g. train_steps=1000 n_traj=256",
    )
    p.add_argument("--model", default="{}", help="extra ChainForceEmulator kwargs (JSON)")
    p.add_argument("--json", default=None)
    p.add_argument("--save", default=None, help="directory to save the trained models in")
    p.add_argument(
        "--floor",
        action="store_true",
        help="also the emulator's form with the true laws (Euler sub-steps of the "
        "chain's own force)",
    )
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    cfg = dict(PRESETS[args.preset])
    for item in args.set:
        key, value = item.split("=", 1)
        cfg[key] = type(cfg[key])(json.loads(value)) if key in cfg else json.loads(value)
    extra = json.loads(args.model)
    with tempfile.TemporaryDirectory() as d:
        rows, ref = run(cfg, args.kinds, extra, Path(d), tuple(args.seeds), args.save, args.floor)
    print(
        f"reference final Q {ref['reference_final_q']:.3f}, mean Rg {ref['reference_rg_mean']:.3f}"
    )
    print(
        table(
            rows,
            [
                "emulator",
                "seed",
                "rollout_rel_l2",
                "median",
                "max",
                "one_step_rel",
                "final_q",
                "q_diff",
                "rg_w1_rel",
                "speedup_vs_rk4",
                "train_s",
            ],
        )
    )
    command = "python benchmarks/chain_emulator.py " + " ".join(argv or sys.argv[1:])
    payload = {
        "command": command.strip(),
        "config": cfg,
        "model_kwargs": extra,
        "targets": TARGETS,
        "machine": machine(),
        **ref,
        "rows": rows,
    }
    write_json(
        args.json or str(Path(__file__).parent / "results" / f"chain_emulator_{args.preset}.json"),
        payload,
    )
    return payload


if __name__ == "__main__":
    main()

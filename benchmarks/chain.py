"""Bead chains: physres Langevin dynamics against OpenMM on the same potential, and the chain
emulators side by side.

1. ``openmm`` (default): the Gō hairpin of ``bead_chain`` (bonds, bending, staple, Gō contacts,
   WCA with cutoff 2^(1/6)σ) rebuilt in OpenMM — HarmonicBondForce, CustomAngleForce,
   CustomBondForce (Gō), CustomNonbondedForce (WCA, CutoffNonPeriodic, chains 1000σ apart) —
   and run with LangevinMiddleIntegrator on the CPU platform with Threads=1, against physres
   ``baoab`` (torch with 1 thread), same dt, friction and temperature. Reports the force
   agreement (OpenMM Reference platform, double precision; ``energy_force`` and the force-only
   path ``conservative_force`` that ``baoab`` reads), the time per chain-step (CPU time
   of interleaved blocks in one process, median over blocks), and the mean potential energy
   per bead of both samplers with standard errors from the independent chains.
   Targets: physres per chain-step ≤ OpenMM's at 64 chains × 32 beads, ≤ 3× at 8 × 256.
   Without OpenMM the comparison is skipped with a message.
2. ``--emulators``: rollout error of the chain-graph emulator with and without staple edges
   and of an MLP ResNet on a stapled chain's gradient flow (what ``chain_fold`` reports).

Run: ``python benchmarks/chain.py [--quick] [--emulators] [--json PATH]``; prints a table and
writes JSON (default: benchmarks/results/chain.json).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import wasserstein_distance

import physres
from physres.systems.chain import radius_of_gyration
from physres.training import fit_for_steps

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine, table, write_json  # noqa: E402

KB = 0.00831446261815324  # kJ/(mol K): OpenMM's units read as ε = 1 kJ/mol, σ = 1 nm, m = 1 u
SPACING = 1000.0  # chains this far apart never interact through the WCA cutoff


def chain_system(n_beads: int, kt: float, friction: float):
    return physres.systems.get(
        "bead_chain",
        n_beads=n_beads,
        target="hairpin",
        staples=[(3, n_beads - 5)],
        temperature=kt,
        friction=friction,
        dynamics="underdamped",
    )


def openmm_system(chain, n_chains: int):
    """The same potential as ``chain`` for ``n_chains`` copies, as an ``openmm.System``."""
    import openmm as mm

    p, n = chain.params, chain.n_beads
    system = mm.System()
    bonds = mm.HarmonicBondForce()
    angles = mm.CustomAngleForce("0.5*k_angle*(cos(theta) - cos0)^2")
    angles.addGlobalParameter("k_angle", p["k_angle"])
    angles.addPerAngleParameter("cos0")
    go = mm.CustomBondForce("eps*(5*(r0/r)^12 - 6*(r0/r)^10)")
    go.addGlobalParameter("eps", p["epsilon"])
    go.addPerBondParameter("r0")
    wca = mm.CustomNonbondedForce(f"4*((s/r)^12 - (s/r)^6) + 1; s = {p['sigma']!r}")
    wca.setNonbondedMethod(mm.CustomNonbondedForce.CutoffNonPeriodic)
    wca.setCutoffDistance(2.0 ** (1.0 / 6.0) * p["sigma"])
    wca.setUseSwitchingFunction(False)
    wca.setUseLongRangeCorrection(False)
    r0, cos0 = chain._bond_r0.tolist(), chain._cos0.tolist()
    contacts, native = chain.contacts.tolist(), chain.native_distances.tolist()
    for c in range(n_chains):
        o = c * n
        for _ in range(n):
            system.addParticle(1.0)
            wca.addParticle([])
        for i in range(n - 1):
            bonds.addBond(o + i, o + i + 1, r0[i], p["k_bond"])
            wca.addExclusion(o + i, o + i + 1)  # WCA acts on |i − j| ≥ 2, non-native pairs
        for i, j, k, length in chain.staples:
            bonds.addBond(o + i, o + j, length, k)
        for i in range(1, n - 1):
            angles.addAngle(o + i - 1, o + i, o + i + 1, [cos0[i - 1]])
        for (i, j), length in zip(contacts, native, strict=True):
            go.addBond(o + i, o + j, [length])
            wca.addExclusion(o + i, o + j)
    for force in (bonds, angles, go, wca):
        system.addForce(force)
    return system


def _offsets(n_chains, dtype=torch.float64):
    off = torch.zeros(n_chains, 1, 3, dtype=dtype)
    off[:, 0, 0] = SPACING * torch.arange(n_chains, dtype=dtype)
    return off


def force_agreement(chain, x) -> dict:
    """Max |ΔF| and |ΔU| between physres and OpenMM's Reference platform (double precision),
    one chain at a time (no far-apart offsets to cost digits)."""
    import openmm as mm

    ctx = mm.Context(
        openmm_system(chain, 1),
        mm.VerletIntegrator(1e-3),
        mm.Platform.getPlatformByName("Reference"),
    )
    e, force = chain.energy_force(x)
    fused = chain.conservative_force(x)  # the force-only path the Langevin steppers read
    df = dff = du = 0.0
    for k in range(x.shape[0]):
        ctx.setPositions(x[k].numpy())
        state = ctx.getState(getForces=True, getEnergy=True)
        f = np.asarray(state.getForces(asNumpy=True)._value)
        df = max(df, float(np.abs(f - force[k].numpy()).max()))
        dff = max(dff, float(np.abs(f - fused[k].numpy()).max()))
        du = max(du, abs(state.getPotentialEnergy()._value - float(e[k])))
    return {
        "max_force_diff": df,
        "max_force_diff_stepper": dff,
        "force_scale": float(force.abs().max()),
        "max_energy_diff": du,
    }


def compare(n_chains: int, n_beads: int, args) -> dict:
    import openmm as mm

    chain = chain_system(n_beads, args.kt, args.friction)
    g = torch.Generator().manual_seed(0)
    x0 = chain.native + 0.02 * torch.randn(n_chains, n_beads, 3, generator=g, dtype=torch.float64)
    row = {
        "chains": n_chains,
        "beads": n_beads,
        "pair_method": chain.pair_method,
        **force_agreement(
            chain, x0[:4] + 0.1 * torch.randn(4, n_beads, 3, generator=g, dtype=torch.float64)
        ),
    }

    integ = mm.LangevinMiddleIntegrator(args.kt / KB, args.friction, args.dt)
    integ.setRandomNumberSeed(1)
    ctx = mm.Context(
        openmm_system(chain, n_chains),
        integ,
        mm.Platform.getPlatformByName("CPU"),
        {"Threads": "1"},
    )
    ctx.setPositions((x0 + _offsets(n_chains)).reshape(-1, 3).numpy())
    ctx.setVelocitiesToTemperature(args.kt / KB, 2)
    stepper = physres.steppers.get("baoab", chain.rhs, seed=1)
    state = torch.stack(
        [x0, (args.kt**0.5) * torch.randn(x0.shape, generator=g, dtype=torch.float64)], dim=1
    )

    def run_physres(s, steps):
        with torch.no_grad():
            return physres.rollout(stepper, s, args.dt, steps, save_every=steps)[:, -1]

    def energy_omm():
        pos = np.asarray(ctx.getState(getPositions=True).getPositions(asNumpy=True)._value)
        x = torch.as_tensor(pos).reshape(n_chains, n_beads, 3) - _offsets(n_chains)
        return chain.energy_force(x)[0]

    # equilibrate, then time interleaved blocks and sample U per bead of every chain
    state = run_physres(state, args.equilibrate)
    integ.step(args.equilibrate)
    t_ours, t_omm, u_ours, u_omm = [], [], [], []
    block = args.block
    for _ in range(args.samples):
        t = time.process_time()
        state = run_physres(state, block)
        t_ours.append(time.process_time() - t)
        t = time.process_time()
        integ.step(block)
        t_omm.append(time.process_time() - t)
        u_ours.append(chain.energy_force(state[:, 0])[0] / n_beads)
        u_omm.append(energy_omm() / n_beads)
    per = {
        k: statistics.median(v) / block / n_chains * 1e6
        for k, v in (("physres", t_ours), ("openmm", t_omm))
    }
    best = {k: min(v) / block / n_chains * 1e6 for k, v in (("physres", t_ours), ("openmm", t_omm))}
    row.update(
        {
            "physres_us_per_chain_step": per["physres"],
            "openmm_us_per_chain_step": per["openmm"],
            "ratio": per["physres"] / per["openmm"],
            "ratio_best_blocks": best["physres"] / best["openmm"],
            "verlet_builds": getattr(chain._verlet, "builds", None),
        }
    )
    for label, u in (("physres", u_ours), ("openmm", u_omm)):
        per_chain = torch.stack(u).mean(0)  # time average of each independent chain
        row[f"{label}_u_per_bead"] = float(per_chain.mean())
        row[f"{label}_u_err"] = float(per_chain.std() / n_chains**0.5)
    row["u_diff_in_errors"] = (
        abs(row["physres_u_per_bead"] - row["openmm_u_per_bead"])
        / (row["physres_u_err"] ** 2 + row["openmm_u_err"] ** 2) ** 0.5
    )
    return row


def openmm_rows(args) -> list[dict]:
    try:
        import openmm  # noqa: F401
    except ImportError:
        print(
            "openmm is not installed: skipping the OpenMM comparison (pip install 'physres[bench]')"
        )
        return []
    sizes = [(64, 32), (8, 256)] if not args.quick else [(16, 32), (4, 128)]
    return [compare(b, n, args) for b, n in sizes]


def _graph(n, staple, use_staples, width, temperature=0.0):
    torch.manual_seed(0)
    return physres.models.ChainGraphEmulator(
        state_shape=(n, 3),
        staples=[staple],
        use_staples=use_staples,
        width=width,
        depth=3,
        temperature=temperature,
        seed=7,
    )


def staple_edges(args, tmp: Path) -> list[dict]:
    n, staple = args.n_beads, (1, args.n_beads - 2)
    system = physres.systems.get("bead_chain", n_beads=n, target="hairpin", staples=[staple])
    data = physres.data.generate(
        system,
        tmp / "flow.h5",
        n_traj=args.n_traj,
        t_end=args.t_flow,
        dt=0.001,
        dt_save=0.02,
        stepper="rk4",
        seed=0,
        progress=False,
    )
    test = system.sample_initial(16, seed=123)
    steps = round(args.t_flow / 0.02)
    with torch.no_grad():
        ref = physres.rollout(
            physres.steppers.get("rk4", system.rhs), test, 0.001, 20 * steps, save_every=20
        )
    rows = []
    for name in ("graph_staples", "graph_no_staples", "mlp_resnet"):
        if name == "mlp_resnet":
            torch.manual_seed(0)
            model = physres.models.ResNetEmulator(state_shape=(n, 3), width=4 * args.width, depth=2)
        else:
            model = _graph(n, staple, name == "graph_staples", args.width)
        t0 = time.perf_counter()
        fit_for_steps(
            model,
            data,
            args.train_steps,
            unroll=args.unroll,
            batch_size=64,
            device="cpu",
            progress=False,
        )
        wall = time.perf_counter() - t0
        model.eval()
        with torch.no_grad():
            pred = physres.rollout(model, test, 0.02, steps)
        err = ((pred - ref).flatten(1).norm(dim=1) / ref.flatten(1).norm(dim=1)).mean()
        rows.append({"benchmark": "rollout", "model": name, "rel_l2": float(err), "train_s": wall})
    base = rows[0]["rel_l2"]
    for r in rows:
        r["ratio_to_staples"] = r["rel_l2"] / base
    return rows


def sampling(args, tmp: Path) -> list[dict]:
    n, staple, kt, dt = args.n_beads, (1, args.n_beads - 2), 0.5, 2e-3
    system = physres.systems.get(
        "bead_chain", n_beads=n, target="hairpin", staples=[staple], temperature=kt
    )
    big = args.speedup * dt
    data = physres.data.generate(
        system,
        tmp / "hot.h5",
        n_traj=args.n_traj,
        t_end=args.t_hot,
        dt=dt,
        dt_save=big,
        seed=1,
        progress=False,
    )
    model = _graph(n, staple, True, args.width, temperature=kt)
    fit_for_steps(
        model, data, args.train_steps, unroll=1, batch_size=64, device="cpu", progress=False
    )
    model.eval()
    x0 = system.sample_initial(args.n_chains, seed=5)
    n_big = round(args.t_hot / big)

    def rg_late(traj):
        return radius_of_gyration(traj[:, traj.shape[1] // 2 :]).reshape(-1).numpy()

    timings, samples = {}, {}
    for label, stepper, step_dt, n_steps, every in (
        (
            "langevin",
            physres.steppers.get("euler_maruyama", system.rhs, seed=2),
            dt,
            n_big * args.speedup,
            args.speedup,
        ),
        (
            "langevin_seed2",
            physres.steppers.get("euler_maruyama", system.rhs, seed=3),
            dt,
            n_big * args.speedup,
            args.speedup,
        ),
        ("emulator", model, big, n_big, 1),
    ):
        t0 = time.perf_counter()
        with torch.no_grad():
            traj = physres.rollout(stepper, x0, step_dt, n_steps, save_every=every)
        timings[label] = time.perf_counter() - t0
        samples[label] = rg_late(traj)
    mean_rg = float(samples["langevin"].mean())
    rows = []
    for label in ("langevin_seed2", "emulator"):
        w1 = wasserstein_distance(samples[label], samples["langevin"])
        rows.append(
            {
                "benchmark": "sampling",
                "model": label,
                "wall_s": timings[label],
                "speedup": timings["langevin"] / timings[label],
                "w1_over_mean_rg": w1 / mean_rg,
            }
        )
    return rows


def emulator_rows(args) -> list[dict]:
    """The emulator rows: staple edges vs none (rollout), emulator vs Langevin (sampling)."""
    size = dict(
        n_beads=12, n_traj=24, t_flow=1.0, t_hot=4.0, width=16, unroll=2, n_chains=32, speedup=50
    )
    for k, v in size.items():
        setattr(args, k, v)
    with tempfile.TemporaryDirectory() as d:
        return staple_edges(args, Path(d)) + sampling(args, Path(d))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smaller sizes and shorter runs")
    p.add_argument("--emulators", action="store_true", help="also the emulator comparison")
    p.add_argument("--train-steps", type=int, default=300)
    p.add_argument("--json", default=str(Path(__file__).parent / "results" / "chain.json"))
    args = p.parse_args(argv)
    args.kt, args.friction, args.dt = 0.3, 1.0, 0.005
    args.equilibrate = 400 if args.quick else 2000
    args.block, args.samples = (20, 20) if args.quick else (50, 80)
    torch.set_num_threads(1)
    rows = openmm_rows(args)
    if rows:
        print(
            table(
                rows,
                [
                    "chains",
                    "beads",
                    "pair_method",
                    "physres_us_per_chain_step",
                    "openmm_us_per_chain_step",
                    "ratio",
                    "ratio_best_blocks",
                    "max_force_diff",
                    "max_force_diff_stepper",
                    "physres_u_per_bead",
                    "physres_u_err",
                    "openmm_u_per_bead",
                    "openmm_u_err",
                    "u_diff_in_errors",
                ],
            )
        )
    emu = emulator_rows(args) if args.emulators else []
    if emu:
        print(
            table(
                emu,
                [
                    "benchmark",
                    "model",
                    "rel_l2",
                    "ratio_to_staples",
                    "wall_s",
                    "speedup",
                    "w1_over_mean_rg",
                ],
            )
        )
    payload = {
        "command": "python benchmarks/chain.py" + (" --quick" if args.quick else ""),
        "settings": {
            "kt": args.kt,
            "friction": args.friction,
            "dt": args.dt,
            "equilibrate": args.equilibrate,
            "block": args.block,
            "samples": args.samples,
        },
        "machine": machine(),
        "openmm": rows,
        "emulators": emu,
    }
    write_json(args.json, payload)
    return payload


if __name__ == "__main__":
    main()

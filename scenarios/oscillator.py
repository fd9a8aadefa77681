"""Oscillator: six ways to step the harmonic oscillator q' = p, p' = −q, over long times.

Known physics (euler, leapfrog, rk4 on the exact field) and learned physics (a ResNet emulator,
a Neural ODE and a symplectic emulator trained on scipy reference trajectories) advance the same
initial states at the same dt, and are held against the exact solution q(t) = q0 cos t + p0 sin t:

* phase portraits — euler spirals out (|R| = √(1 + dt²) > 1), leapfrog stays on a closed curve
  (symplectic), rk4 slowly spirals in;
* energy drift |H(t) − H(0)|/H(0) over long times — bounded for leapfrog, growing for the rest;
* relative error against the exact solution;
* structure: a symplectic emulator (a SympNet, exactly symplectic for any weights) against a
  plain ResNet emulator, both trained by ``physres.training.fit`` with its defaults, on the
  oscillator and on the pendulum, over ``long_steps`` steps: the symplectic map's energy error
  stays bounded (a slope fitted to its envelope is ~0), the plain map's drifts.

Run: ``physres run oscillator --quick`` or ``python scenarios/oscillator.py --quick``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import physres
from physres import runner
from physres._output import markdown_table
from physres.validation import invariant_drift, relative_l2

SUMMARY = (
    "harmonic oscillator: euler vs leapfrog vs rk4 vs ResNet, Neural ODE and symplectic "
    "emulators — phase portraits, energy drift over long times (and on the pendulum)"
)


@dataclass(frozen=True)
class Config:
    n_traj: int  # reference trajectories for training
    dt: float  # the step of every stepper (frame_step · dt_save for the learned ones)
    n_steps: int  # long-time rollout
    n_test: int
    width: int
    resnet_steps: int  # optimiser steps
    node_steps: int
    unroll: int
    epochs: int  # fit with its defaults: the symplectic emulators and the pendulum ResNet
    symplectic_width: int
    long_steps: int  # the structure study's horizon


QUICK = Config(
    n_traj=32,
    dt=0.1,
    n_steps=1000,
    n_test=8,
    width=64,
    resnet_steps=600,
    node_steps=300,
    unroll=2,
    epochs=12,
    symplectic_width=16,
    long_steps=10_000,
)
FULL = Config(
    n_traj=64,
    dt=0.1,
    n_steps=10_000,
    n_test=16,
    width=64,
    resnet_steps=4000,
    node_steps=2000,
    unroll=4,
    epochs=20,
    symplectic_width=16,
    long_steps=100_000,
)
CLASSICAL = ("euler", "leapfrog", "rk4")
ENVELOPE_WINDOWS = 20  # the energy-error envelope: its max over each of these time windows


def train(kind: str, data: Path, cfg: Config, ctx: runner.Context):
    """A ResNet emulator (learned step map) or a Neural ODE (learned field, rk4 inside)."""
    torch.manual_seed(0)
    if kind == "resnet":
        model = physres.models.ResNetEmulator(state_shape=(2,), width=cfg.width, dt=cfg.dt)
        steps = cfg.resnet_steps
    else:
        model = physres.models.NeuralODE(state_shape=(2,), width=cfg.width, method="rk4", dt=cfg.dt)
        steps = cfg.node_steps
    with physres.data.open(data) as f:
        frame_step = round(cfg.dt / f.dt_save)
    result = ctx.fit(model, data, steps, unroll=cfg.unroll, frame_step=frame_step)
    return model.to("cpu").eval(), result


def train_default(kind: str, data: Path, cfg: Config, ctx: runner.Context):
    """A symplectic or plain ResNet emulator trained by ``fit`` with its default settings
    (only the length, ``epochs``, and the step, ``frame_step``, are chosen here)."""
    torch.manual_seed(0)
    if kind == "symplectic":
        model = physres.models.SymplecticEmulator(
            state_shape=(2,), width=cfg.symplectic_width, dt=cfg.dt
        )
    else:
        model = physres.models.ResNetEmulator(state_shape=(2,), width=cfg.width, dt=cfg.dt)
    with physres.data.open(data) as f:
        frame_step = round(cfg.dt / f.dt_save)
    result = ctx.train(model, data, epochs=cfg.epochs, frame_step=frame_step)
    return model.to("cpu").eval(), result


def energy_envelope(error: np.ndarray, t: np.ndarray, windows: int = ENVELOPE_WINDOWS) -> dict:
    """Linear fit to the envelope of an energy error: its max over each of ``windows`` equal
    time windows (the first starts after step 0) against the windows' centres.

    ``error`` : (batch, n_t) |ΔH| (relative), ``t`` : (n_t,). Returns the slope (per unit
    time), ``trend`` = slope · (time span) / mean envelope (≈ 0 for a bounded error, ≈ 2 for
    one growing linearly from 0), the first and last windows' maxima and the envelope itself.
    """
    worst = error[:, 1:].max(axis=0)  # (n_t - 1,) worst over the trajectories
    tt = t[1:]
    edges = np.linspace(0, len(worst), windows + 1).astype(int)
    env = np.array([worst[a:b].max() for a, b in zip(edges[:-1], edges[1:], strict=True)])
    centre = np.array([tt[a:b].mean() for a, b in zip(edges[:-1], edges[1:], strict=True)])
    slope = float(np.polyfit(centre, env, 1)[0])
    span = float(tt[-1] - tt[0])
    return {
        "slope": slope,
        "trend": slope * span / float(env.mean()),
        "first_window_max": float(env[0]),
        "last_window_max": float(env[-1]),
        "envelope": env.tolist(),
        "window_t": centre.tolist(),
    }


def long_rollout(model, x0, dt: float, n_steps: int, progress: bool):
    """``n_steps`` of ``model`` from ``x0``; on divergence, the finite part and the step."""
    from physres.errors import DivergenceError

    try:
        with torch.no_grad():
            return physres.rollout(
                model, x0, dt=dt, n_steps=n_steps, progress=progress
            ).double(), None
    except DivergenceError as exc:
        return exc.trajectory.double(), exc.step


def structure_study(
    oscillator_data: Path, cfg: Config, ctx: runner.Context, trained: dict | None = None
) -> dict:
    """Symplectic vs plain ResNet emulators, both trained by ``fit``'s defaults, on the
    oscillator and the pendulum: energy error over ``cfg.long_steps`` steps from held-out
    states, its envelope's trend, and the error against the exact solution at t = 10, 100.

    The energy error is |H(t) − H(0)| / (H(0) − min H): relative to the energy above the
    potential's minimum (0 for the oscillator, −ω² for the pendulum). ``trained`` maps
    ``(system, kind)`` to an already trained ``(model, fit result)``."""
    pendulum = physres.systems.get("pendulum")
    pendulum_data = physres.data.generate(
        pendulum, ctx.path("pendulum.h5"), n_traj=cfg.n_traj, progress=ctx.progress
    )
    cases = {
        "oscillator": (physres.systems.get("harmonic_oscillator"), oscillator_data, 0.0),
        "pendulum": (pendulum, pendulum_data, -(pendulum.omega**2)),
    }
    t = np.arange(cfg.long_steps + 1) * cfg.dt
    i10, i100 = int(round(10.0 / cfg.dt)), int(round(100.0 / cfg.dt))
    result = {"long_steps": cfg.long_steps, "t_end": float(t[-1]), "rows": [], "curves": {}}
    for system_name, (system, data, floor) in cases.items():
        x0 = system.sample_initial(cfg.n_test, seed=12345)
        exact = system.solution(x0, torch.as_tensor(t[: i100 + 1])).numpy()
        energy0 = system.invariants(x0)["energy"].numpy()
        for kind, label in (("symplectic", "symplectic emulator"), ("resnet", "resnet emulator")):
            if (system_name, kind) in (trained or {}):
                model, fit = trained[system_name, kind]
            else:
                model, fit = train_default(kind, data, cfg, ctx)
                physres.save(model, ctx.path(f"{system_name}_{kind}.pt"))
            t0 = time.perf_counter()
            traj, diverged = long_rollout(model, x0, cfg.dt, cfg.long_steps, ctx.progress)
            wall = time.perf_counter() - t0
            n = traj.shape[1]
            energy = system.invariants(traj.reshape(-1, 2))["energy"].reshape(cfg.n_test, n)
            err_e = np.abs(energy.numpy() - energy0[:, None]) / (energy0[:, None] - floor)
            env = energy_envelope(err_e, t[:n])
            x = traj.numpy()
            rel = relative_l2(x[:, : min(n, i100 + 1)], exact[:, : min(n, i100 + 1)])
            result["rows"].append(
                {
                    "system": system_name,
                    "model": label,
                    "train_steps": fit.steps,
                    "train_wall_s": fit.wall_s,
                    "steps": n - 1,
                    "diverged at step": diverged,
                    "rel. error t=10": float(np.median(rel[:, i10 - 1])) if n > i10 else None,
                    "rel. error t=100": float(np.median(rel[:, i100 - 1])) if n > i100 else None,
                    "max |ΔH|": float(err_e.max()),
                    "envelope first window": env["first_window_max"],
                    "envelope last window": env["last_window_max"],
                    "envelope slope (1/time)": env["slope"],
                    "envelope trend": env["trend"],
                    "rollout_wall_s": wall,
                }
            )
            stride = max(1, (n - 1) // 2000)  # plotted: the max over each stride of steps
            m = (n - 1) // stride * stride
            binned = err_e[:, 1 : m + 1].max(axis=0).reshape(-1, stride).max(axis=1)
            result["curves"][f"{system_name}/{label}"] = {
                "t": t[1 : m + 1].reshape(-1, stride)[:, -1].tolist(),
                "max_error": binned.tolist(),
                "window_t": env["window_t"],
                "envelope": env["envelope"],
            }
    return result


def run(cfg: Config, ctx: runner.Context):
    progress = ctx.progress
    system = physres.systems.get("harmonic_oscillator")

    # 1. reference data from scipy (DOP853, rtol 1e-10), then two learned steppers
    data = physres.data.generate(
        system, ctx.path("oscillator.h5"), n_traj=cfg.n_traj, progress=progress
    )
    steppers, training = {}, {}
    for name in CLASSICAL:
        steppers[name] = physres.steppers.get(name, system.rhs)
    for kind, label in (("resnet", "resnet emulator"), ("node", "neural ode")):
        model, result = train(kind, data, cfg, ctx)
        physres.save(model, ctx.path(f"{kind}.pt"))
        steppers[label] = model
        training[label] = {
            "steps": result.steps,
            "wall_s": result.wall_s,
            "final_loss": result.summary()["final_loss"],
        }
    model, symplectic_fit = train_default("symplectic", data, cfg, ctx)
    physres.save(model, ctx.path("symplectic.pt"))
    steppers["symplectic emulator"] = model
    training["symplectic emulator"] = {
        "steps": symplectic_fit.steps,
        "wall_s": symplectic_fit.wall_s,
        "final_loss": symplectic_fit.summary()["final_loss"],
    }

    # 2. the same held-out initial states, the same dt, a long rollout
    x0 = system.sample_initial(cfg.n_test, seed=12345)
    t = torch.arange(cfg.n_steps + 1, dtype=torch.float64) * cfg.dt
    exact = system.solution(x0, t).numpy()
    energy0 = system.invariants(x0)["energy"].numpy()
    runs, rows = {}, []
    for name, stepper in steppers.items():
        t0 = time.perf_counter()
        with torch.no_grad():
            traj = physres.rollout(
                stepper, x0, dt=cfg.dt, n_steps=cfg.n_steps, progress=progress
            ).to(torch.float64)
        wall = time.perf_counter() - t0
        x = traj.numpy()
        energy = system.invariants(traj.reshape(-1, 2))["energy"].reshape(cfg.n_test, -1)
        drift = np.abs(invariant_drift(energy.numpy()))  # (n_test, n_t)
        err = relative_l2(x, exact)  # (n_test, n_steps), t > 0
        i10 = int(round(10.0 / cfg.dt)) - 1
        runs[name] = {"x": x, "drift": drift, "err": err}
        rows.append(
            {
                "stepper": name,
                "dt": cfg.dt,
                "rel. error t=10": float(np.median(err[:, i10])),
                f"rel. error t={t[-1]:g}": float(np.median(err[:, -1])),
                "max |ΔH|/H0": float(drift.max()),
                "final |ΔH|/H0": float(np.median(drift[:, -1])),
                "wall_s": wall,
            }
        )

    structure = structure_study(
        data, cfg, ctx, trained={("oscillator", "symplectic"): (model, symplectic_fit)}
    )
    plot_phase(ctx, runs, exact, cfg)
    plot_energy(ctx, runs, t.numpy())
    plot_error(ctx, runs, t.numpy()[1:])
    plot_structure(ctx, structure)
    report = {
        "system": {"name": "harmonic_oscillator", **system.params},
        "t_end": float(t[-1]),
        "energy0_median": float(np.median(energy0)),
        "training": training,
        "steppers": {r["stepper"]: r for r in rows},
        "structure": structure,
        "summary": rows,
    }
    return report, _markdown(report, cfg, ctx.quick)


# --- figures ----------------------------------------------------------------------------------
def plot_phase(ctx, runs, exact, cfg):
    fig, axes = ctx.subplots(1, len(runs), figsize=(3.0 * len(runs), 3.3), sharex=True, sharey=True)
    lim = 1.8 * np.abs(exact[0]).max()
    for ax, (name, r) in zip(axes, runs.items(), strict=True):
        x = r["x"][0]
        period = int(np.ceil(2 * np.pi / cfg.dt)) + 1
        ax.plot(exact[0, :period, 0], exact[0, :period, 1], "k--", lw=0.9, label="exact")
        ax.plot(x[:, 0], x[:, 1], lw=0.6, label=name)
        ax.plot(x[0, 0], x[0, 1], "ko", ms=3)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("q")
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
    axes[0].set_ylabel("p")
    fig.suptitle(
        f"Phase portraits, {cfg.n_steps} steps of dt = {cfg.dt:g} "
        f"(t = 0 … {cfg.n_steps * cfg.dt:g}; dashed: exact)",
        fontsize=11,
    )
    return ctx.save_figure(fig, "oscillator_phase.png")


def plot_energy(ctx, runs, t):
    fig, ax = ctx.subplots(figsize=(7.0, 4.4))
    for name, r in runs.items():
        ax.semilogy(
            t[1:], np.maximum(np.median(r["drift"][:, 1:], axis=0), 1e-17), lw=1.2, label=name
        )
    ax.set_xlabel("time t (units of 1/ω)")
    ax.set_ylabel(r"median $|H(t) - H(0)|\,/\,H(0)$")
    ax.set_title("Energy drift")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=9)
    return ctx.save_figure(fig, "oscillator_energy.png")


def plot_error(ctx, runs, t):
    fig, ax = ctx.subplots(figsize=(7.0, 4.4))
    for name, r in runs.items():
        ax.semilogy(t, np.median(r["err"], axis=0), lw=1.2, label=name)
    ax.set_xlabel("time t (units of 1/ω)")
    ax.set_ylabel(r"median $\|x(t) - x_{exact}(t)\| / \|x_{exact}(t)\|$")
    ax.set_title("Error against the exact solution")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=9)
    return ctx.save_figure(fig, "oscillator_error.png")


def plot_structure(ctx, structure):
    fig, axes = ctx.subplots(1, 2, figsize=(12, 4.4), sharey=True)
    colors = {"symplectic emulator": "C0", "resnet emulator": "C3"}
    for ax, system in zip(axes, ("oscillator", "pendulum"), strict=True):
        for key, c in structure["curves"].items():
            sys_name, label = key.split("/")
            if sys_name != system:
                continue
            ax.loglog(
                c["t"], c["max_error"], lw=0.8, color=colors[label], alpha=0.8, label=f"{label}"
            )
            ax.loglog(c["window_t"], c["envelope"], "o", ms=3, color=colors[label])
        ax.set_xlabel("time t (units of 1/ω)")
        ax.set_title(f"{system}: {structure['long_steps']} steps of dt = 0.1")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=9)
    axes[0].set_ylabel("max over states of |H(t) − H(0)| / (H(0) − min H)")
    fig.suptitle(
        "Energy error of learned step maps trained by fit's defaults (line: max over "
        "bins of steps; dots: max over the 20 fit windows)",
        fontsize=10,
    )
    return ctx.save_figure(fig, "oscillator_structure.png")


def _markdown(r, cfg: Config, quick: bool) -> str:
    size = "`--quick` size (CPU, minutes)" if quick else "full size (minutes on a CPU)"
    s = r["steppers"]
    return "\n".join(
        [
            "# Oscillator: known and learned steppers over long times",
            "",
            f"Run at {size}. System: harmonic oscillator "
            "q' = p, p' = −q (ω = 1, mass 1). Reference data: "
            f"{cfg.n_traj} trajectories from scipy DOP853 (rtol 1e-10) saved every 0.05. Every "
            f"stepper advances the same {cfg.n_test} held-out initial states with dt = {cfg.dt:g} "
            f"for {cfg.n_steps} steps (t = {r['t_end']:g}); errors are against the exact solution.",
            "",
            f"The ResNet emulator learns the step map x ↦ x + g(x) ({cfg.resnet_steps} optimiser "
            f"steps); the Neural ODE learns a field integrated by rk4 inside ({cfg.node_steps} "
            f"steps); both with a {cfg.unroll}-step unrolled loss. The symplectic emulator (a "
            f"SympNet: {cfg.symplectic_width}-wide gradient and linear shears, exactly symplectic "
            f"for any weights) is trained by `physres.training.fit` with its defaults for "
            f"{cfg.epochs} epochs ({r['training']['symplectic emulator']['steps']} steps).",
            "",
            markdown_table(r["summary"]),
            "",
            "Euler's energy grows by a factor 1 + dt² per step (its stability function "
            "|R(i·dt)| = √(1 + dt²)): "
            f"{s['euler']['max |ΔH|/H0']:.3g} after {cfg.n_steps} steps. Leapfrog is symplectic: "
            f"its energy error stays bounded at {s['leapfrog']['max |ΔH|/H0']:.2g}. rk4 loses "
            f"energy slowly ({s['rk4']['max |ΔH|/H0']:.2g}). The learned steppers carry no such "
            "structure: their drift is set by the training error. The symplectic emulator is "
            "exactly symplectic, so — like leapfrog — its energy error stays bounded (at "
            f"{s['symplectic emulator']['max |ΔH|/H0']:.2g}, set by its training error).",
            "",
            "![phase portraits](oscillator_phase.png)",
            "",
            "![energy drift](oscillator_energy.png)",
            "",
            "![error](oscillator_error.png)",
            "",
            "## Structure: symplectic vs plain ResNet emulators over "
            f"{r['structure']['long_steps']} steps",
            "",
            "Both emulators trained by `physres.training.fit` with its default settings "
            f"({cfg.epochs} epochs, frame step {round(cfg.dt / 0.05)}) on {cfg.n_traj} reference "
            f"trajectories of each system, then rolled out {r['structure']['long_steps']} steps "
            f"of dt = {cfg.dt:g} (t = {r['structure']['t_end']:g}) from {cfg.n_test} held-out "
            "states. Energy error |H(t) − H(0)| / (H(0) − min H) (the pendulum's energy is "
            "measured from the bottom of its well, −ω²); its envelope is the max over the states "
            f"and over each of {ENVELOPE_WINDOWS} equal time windows, and a line is fitted to it: "
            "`envelope trend` = fitted slope × time span / mean envelope (≈ 0 when bounded, ≈ 2 "
            "for an error growing linearly from 0).",
            "",
            markdown_table(r["structure"]["rows"]),
            "",
            "![structure](oscillator_structure.png)",
            "",
        ]
    )


if __name__ == "__main__":
    runner.script(__file__)

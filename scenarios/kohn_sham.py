"""Kohn–Sham: the 1-D two-electron soft-Coulomb atom (helium model, LDA exchange) kicked by a
weak field, propagated by the residual step (euler), split_operator, crank_nicolson_pc,
exponential_midpoint and etrs against scipy DOP853 on the same discrete Kohn–Sham Hamiltonian:

* dipole moment d(t) for each propagator and the reference;
* its spectrum |d(ω)| (absorption lines of the atom);
* energy and norm conservation, cost;
* two learned ``unitary_cayley`` emulators that know only the one-body ``T + v_ext`` and are
  trained by ``physres.training.fit`` on reference trajectories of stronger kicks: one learns a
  static potential, the other also a density kernel ``w_θ ⋆ ρ`` (a learned Hartree-exchange
  response). Both are unitary by construction; only the second can follow the density.

Run: ``physres run kohn_sham --quick`` or ``python scenarios/kohn_sham.py --quick``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

import physres
from physres import runner
from physres._output import markdown_table

SUMMARY = (
    "kohn_sham: a kicked 1-D two-electron atom (TDDFT, LDA exchange) — dipole moment and "
    "spectrum for euler, split_operator, crank_nicolson_pc, exponential_midpoint, etrs "
    "and learned unitary emulators vs scipy DOP853"
)

STEPPERS = ("euler", "split_operator", "crank_nicolson_pc", "exponential_midpoint", "etrs")
EMULATORS = {"emulator (static v)": False, "emulator (density kernel)": True}
TRAIN_KICK, TRAIN_SEED = 0.2, 3  # training kicks κ ~ U(−0.2, 0.2); evaluation: κ = cfg.kick


@dataclass(frozen=True)
class Config:
    n_grid: int
    x_max: float
    dt: float
    t_end: float
    kick: float
    dt_save: float
    n_train: int  # training trajectories of the emulators
    train_t_end: float
    emulator_dt: float
    emulator_steps: int  # optimiser steps


QUICK = Config(
    n_grid=128,
    x_max=16.0,
    dt=0.05,
    t_end=20.0,
    kick=0.01,
    dt_save=0.1,
    n_train=8,
    train_t_end=4.0,
    emulator_dt=0.05,
    emulator_steps=500,
)
FULL = Config(
    n_grid=400,
    x_max=40.0,
    dt=0.02,
    t_end=200.0,
    kick=0.01,
    dt_save=0.1,
    n_train=16,
    train_t_end=8.0,
    emulator_dt=0.05,
    emulator_steps=2000,
)


def run(cfg: Config, ctx: runner.Context):
    progress = ctx.progress
    ks = physres.systems.get("kohn_sham_1d", n=cfg.n_grid, x_min=-cfg.x_max, x_max=cfg.x_max)
    t0 = time.perf_counter()
    phi, eps, info = ks.ground_state(progress=progress)
    scf_wall = time.perf_counter() - t0
    x0 = ks.kicked(phi, [cfg.kick])  # (1, n_orb, n)
    n_steps = round(cfg.t_end / cfg.dt)
    every = round(cfg.dt_save / cfg.dt)
    t = np.arange(n_steps // every + 1) * every * cfg.dt
    t0 = time.perf_counter()
    ref = torch.from_numpy(
        physres.reference.solve(ks, x0, t, method="DOP853", rtol=1e-10, atol=1e-12)
    )
    runs = {
        "reference (DOP853)": {"psi": ref, "wall_s": time.perf_counter() - t0, "diverged": None}
    }
    for name in STEPPERS:
        step = physres.steppers.get(name, ks.rhs)
        t0 = time.perf_counter()
        try:
            traj = physres.rollout(step, x0, cfg.dt, n_steps, save_every=every, progress=progress)
            diverged = None
        except physres.DivergenceError as err:
            traj, diverged = err.trajectory, err.time
        runs[name] = {"psi": traj, "wall_s": time.perf_counter() - t0, "diverged": diverged}
    emu_every = round(cfg.dt_save / cfg.emulator_dt)
    for name, (model, fit_result) in _train_emulators(ks, cfg, ctx).items():
        t0 = time.perf_counter()
        with torch.no_grad():
            traj = physres.rollout(
                model,
                x0,
                cfg.emulator_dt,
                round(cfg.t_end / cfg.emulator_dt),
                save_every=emu_every,
                progress=progress,
            )
        runs[name] = {
            "psi": traj,
            "wall_s": time.perf_counter() - t0,
            "diverged": None,
            "dt": cfg.emulator_dt,
            "train_s": fit_result.wall_s,
            "train_steps": fit_result.steps,
        }
    E0 = float(ks.energy(x0))
    d_ref = ks.dipole(ref[0]).numpy()
    rows, series = [], {}
    for name, r in runs.items():
        psi = r["psi"][0]
        m = psi.shape[0]
        d = ks.dipole(psi).numpy()
        energy = ks.energy(psi).numpy()
        norm = ks.norm(psi).numpy()
        finite = bool(
            np.isfinite(d).all() and np.isfinite(energy).all() and np.isfinite(norm).all()
        )
        series[name] = {"t": t[:m], "d": d}
        rows.append(
            {
                "propagator": name,
                "dt": None if name.startswith("reference") else r.get("dt", cfg.dt),
                "max |d - d_ref|": float(np.abs(d - d_ref[:m]).max()) if finite else None,
                "max |E - E0|": float(np.abs(energy - E0).max()) if finite else None,
                "max |norm - 1|": float(np.abs(norm - 1).max()) if finite else None,
                "diverged at t": r["diverged"],
                "wall_s": r["wall_s"],
                "train_steps": r.get("train_steps"),
                "train_s": r.get("train_s"),
            }
        )
    _plot_dipole(ctx, series)
    _plot_spectrum(ctx, series, cfg)
    report = {
        "ground_state": {
            "orbital_energies": eps.tolist(),
            "energy": float(ks.energy(phi[None])),
            "scf_iterations": info["iterations"],
            "scf_wall_s": scf_wall,
        },
        "dipole_amplitude": float(np.abs(d_ref).max()),
        "summary": rows,
    }
    return report, _markdown(report, cfg, ctx)


def _train_emulators(ks, cfg, ctx):
    """Reference (DOP853) trajectories of ground states kicked by κ ~ U(−TRAIN_KICK,
    TRAIN_KICK) (seed ``TRAIN_SEED``), saved every ``cfg.emulator_dt``; both emulators trained on
    them by :func:`physres.training.fit` (plain squared one-step error) on the run's device,
    then brought back to the CPU for the rollouts next to the reference."""
    train_system = physres.systems.get("kohn_sham_1d", **{**ks.params, "kick": TRAIN_KICK})
    data = physres.data.generate(
        train_system,
        ctx.path("kohn_sham_train.h5"),
        n_traj=cfg.n_train,
        t_end=cfg.train_t_end,
        dt_save=cfg.emulator_dt,
        seed=TRAIN_SEED,
        progress=ctx.progress,
    )
    trained = {}
    for name, kernel in EMULATORS.items():
        model = physres.models.UnitaryCayleyEmulator(
            state_shape=ks.state_shape, system=ks, dt=cfg.emulator_dt, density_kernel=kernel
        )
        # Adam moves the learned potential by ~lr hartree per step; v_Hxc is O(1) hartree
        fit = ctx.fit(model, data, cfg.emulator_steps, lr=0.2, batch_size=64, normalize=False)
        trained[name] = (model.to("cpu"), fit)
    return trained


def _line(name: str) -> str:
    """Reference dashed, learned emulators dash-dotted, steppers solid."""
    return "--" if name.startswith("reference") else "-." if name in EMULATORS else "-"


def _omitted(series) -> dict[str, str]:
    """Propagators not drawn, with the reason: non-finite or blown-up (|d| > 1) dipoles."""
    out = {}
    for name, s in series.items():
        if not np.isfinite(s["d"]).all():
            out[name] = "diverged"
        elif np.abs(s["d"]).max() > 1:
            out[name] = "|d| > 1: blown up"
    return out


def _omitted_text(omitted) -> str:
    return (
        "not drawn: " + ", ".join(f"{n} ({why})" for n, why in omitted.items())
        if omitted
        else "every propagator drawn"
    )


def _plot_dipole(ctx, series):
    fig, ax = ctx.subplots(figsize=(8.0, 4.4))
    omitted = _omitted(series)
    for name, s in series.items():
        if name not in omitted:
            ax.plot(s["t"], s["d"], lw=1.0, ls=_line(name), label=name)
    ax.set_xlabel("time t (a.u.)")
    ax.set_ylabel("dipole moment d(t) (a.u.)")
    ax.set_title(f"Kicked two-electron atom ({_omitted_text(omitted)})", fontsize=10)
    ax.legend(fontsize=8)
    return ctx.save_figure(fig, "kohn_sham_dipole.png")


def _plot_spectrum(ctx, series, cfg):
    fig, ax = ctx.subplots(figsize=(8.0, 4.4))
    omitted = _omitted(series)
    for name, s in series.items():
        if name in omitted or len(s["t"]) < 16:
            continue
        d = s["d"] - s["d"].mean()
        window = np.hanning(len(d))
        spec = np.abs(np.fft.rfft(d * window)) * cfg.dt_save
        w = 2 * np.pi * np.fft.rfftfreq(len(d), d=cfg.dt_save)
        ax.semilogy(w, np.maximum(spec, 1e-12), lw=1.0, ls=_line(name), label=name)
    ax.set_xlim(0, 3.0)
    ax.set_xlabel("frequency ω (Hartree)")
    ax.set_ylabel("|d(ω)| (a.u.; floor 1e-12)")
    ax.set_title(f"Dipole spectrum (Hann window; {_omitted_text(omitted)})", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return ctx.save_figure(fig, "kohn_sham_spectrum.png")


def _markdown(r, cfg, ctx) -> str:
    size = (
        "`--quick` size (CPU)"
        if ctx.quick
        else "full size (meant for a GPU; `--quick` runs a reduced version on a CPU)"
    )
    g = r["ground_state"]
    return "\n".join(
        [
            "# Kohn–Sham: a kicked two-electron atom",
            "",
            f"Run at {size}. `kohn_sham_1d`: 2 electrons, soft-Coulomb "
            f"nucleus Z = 2, Hartree + LDA exchange, {cfg.n_grid} points on [−{cfg.x_max:g}, "
            f"{cfg.x_max:g}], fd5. Ground state: KS energy {g['energy']:.6f} Ha, orbital energy "
            f"{g['orbital_energies'][0]:.6f} Ha ({g['scf_iterations']} SCF iterations). Kick "
            f"κ = {cfg.kick:g}; dt = {cfg.dt:g} up to t = {cfg.t_end:g}. Reference: scipy DOP853 "
            "(rtol 1e-10) on the same discrete Kohn–Sham Hamiltonian.",
            "",
            markdown_table(r["summary"]),
            "",
            *_emulator_text(r, cfg),
            "",
            *[f"![{f}]({f})" for f in ctx.figures],
            "",
        ]
    )


def _emulator_text(r, cfg) -> list[str]:
    rows = {row["propagator"]: row for row in r["summary"]}
    static, kernel = (rows[name] for name in EMULATORS)
    cn = rows["crank_nicolson_pc"]

    def g(v):
        return "—" if v is None else f"{v:.3g}"

    return [
        "## Learned emulators",
        "",
        f"Two `unitary_cayley` emulators know only the one-body `T + v_ext` and are trained by "
        f"`physres.training.fit` ({kernel['train_steps']} Adam steps each, plain squared "
        f"one-step error) on {cfg.n_train} DOP853 trajectories of length {cfg.train_t_end:g} "
        f"of ground states kicked by κ ~ U(−{TRAIN_KICK:g}, {TRAIN_KICK:g}): stronger kicks "
        f"than the κ = {cfg.kick:g} they are evaluated on. They step at dt = "
        f"{cfg.emulator_dt:g}; both are Cayley steps of a real symmetric H, so the norm stays "
        f"at 1 to {g(max(static['max |norm - 1|'], kernel['max |norm - 1|']))}.",
        "",
        f"* static learned potential: max |d − d_ref| = {g(static['max |d - d_ref|'])} "
        f"({g(static['train_s'])} s to train). It learns the ground-state mean field, so it "
        f"propagates independent electrons in a frozen potential: the dipole oscillates at the "
        f"bare Kohn–Sham transition, not at the interacting one.",
        f"* with a learned density kernel `w_θ ⋆ ρ` (evaluated at the predicted midpoint "
        f"density, as `crank_nicolson_pc`): max |d − d_ref| = {g(kernel['max |d - d_ref|'])} "
        f"({g(kernel['train_s'])} s to train; the dipole itself peaks at "
        f"{g(r['dipole_amplitude'])}). The kernel supplies the Hartree-exchange "
        f"response that shifts the line. For scale, `crank_nicolson_pc` on the exact "
        f"Hamiltonian reaches {g(cn['max |d - d_ref|'])} at dt = {cfg.dt:g}.",
    ]


if __name__ == "__main__":
    runner.script(__file__)

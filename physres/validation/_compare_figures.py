"""Figures of :class:`physres.validation.Comparison`: error vs dt, work–precision, drift,
the stability search and the stability regions (measured by
:func:`physres.steppers.stability_function`)."""

from __future__ import annotations

import numpy as np

from .. import steppers as _steppers
from .._output import save_figure, subplots
from ..steppers.base import REGISTRY
from ..steppers.stability import stability_function
from . import _stability


def error_vs_dt(c, path):
    fig, axes = subplots(squeeze=False, figsize=(8.2, 4.6))
    ax = axes[0, 0]
    for i, n in enumerate(c.names):
        color = f"C{i}"
        err = np.where(np.isfinite(c.errors[n]), c.errors[n], np.nan)
        label = n if np.isnan(c.orders[n]) else f"{n} (order {c.orders[n]:.2f})"
        ax.loglog(c.dts, err, "o-", color=color, label=label)
        if c.fit_dts[n] is not None:
            lo, hi = c.fit_dts[n]
            sel = (c.dts >= lo) & (c.dts <= hi)
            coef = np.polyfit(np.log(c.dts[sel]), np.log(err[sel]), 1)
            d = np.geomspace(lo, hi, 20)
            ax.loglog(d, np.exp(np.polyval(coef, np.log(d))), "--", color=color, lw=3, alpha=0.4)
    ax.set_xlabel("step size Δt (system time units)")
    ax.set_ylabel(f"relative L2 error at t = {c.t_end:g}")
    ax.set_title(f"{c.system}: error vs step size (dashed: fitted slope)")
    _log_axes(ax)
    return save_figure(fig, path)


def work_precision(c, path):
    fig, axes = subplots(squeeze=False, figsize=(8.2, 4.6))
    ax = axes[0, 0]
    for i, n in enumerate(c.names):
        err = np.where(np.isfinite(c.errors[n]), c.errors[n], np.nan)
        ax.loglog(c.wall_s[n], err, "o-", color=f"C{i}", label=n)
    ax.set_xlabel("wall time per run (s)")
    ax.set_ylabel(f"relative L2 error at t = {c.t_end:g}")
    ax.set_title(f"{c.system}: work–precision ({c.n_traj} trajectories per run)")
    _log_axes(ax)
    return save_figure(fig, path)


def drift(c, path):
    j = c.drift_index
    invariants = sorted({k for n in c.names for k in c.drift[n]})
    fig, axes = subplots(1, len(invariants), figsize=(8.2 * len(invariants), 4.6), squeeze=False)
    for ax, inv in zip(axes[0], invariants, strict=True):
        for i, n in enumerate(c.names):
            t, series = c.series[n][j]
            if inv in series:
                worst = np.abs(series[inv]).max(0)
                ax.semilogy(t, np.maximum(worst, 1e-17), color=f"C{i}", label=n)
        ax.set_xlabel("time t (system time units)")
        ax.set_ylabel(f"|Δ{inv}| / |{inv}(0)| (worst trajectory)")
        ax.set_title(f"{c.system}: {inv} drift at Δt = {c.dts[j]:.3g}")
        _log_axes(ax)
    return save_figure(fig, path)


def amplification(c, path):
    fig, axes = subplots(squeeze=False, figsize=(8.2, 4.6))
    ax = axes[0, 0]
    linear = True
    for i, n in enumerate(c.names):
        s = c.stability.get(n)
        if not s or not s["probes"]:
            continue
        linear = s["linear"]
        d, g = np.array(s["probes"]).T
        g = np.where(np.isfinite(g), g, np.nan)
        ax.plot(d, g, ".-", color=f"C{i}", label=f"{n}: {stable_text(s)}", ms=3, lw=1.2)
        dt_star = s["largest_stable_dt"]
        if 0 < dt_star < np.inf:
            ax.axvline(dt_star, color=f"C{i}", ls=":", lw=1.2)
    ax.set_xscale("log")
    if linear:
        ax.set_yscale("symlog", linthresh=_stability.TOL_LINEAR)
        ax.axhspan(-_stability.TOL_LINEAR, _stability.TOL_LINEAR, color="0.85", zorder=0)
        ax.set_ylabel("excess growth per step, log ρ(M) − log ρ(exact)")
        ax.set_title(f"{c.system}: one-step growth vs Δt (> 0: unstable; grey: round-off)")
    else:
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_ylabel("largest norm / reference's largest norm")
        ax.set_title(f"{c.system}: bounded-growth search (unstable runs not drawn)")
    ax.set_xlabel("step size Δt (system time units)")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(
        fontsize=8,
        title="largest stable Δt",
        title_fontsize=8,
        loc="center left",
        bbox_to_anchor=(1.01, 0.5),
    )
    return save_figure(fig, path)


def regions(c, path):
    """Measured regions |R(z)| ≤ 1 with the system's spectrum scaled by each stepper's
    largest stable dt (linear fields): those points sit on the region's boundary."""
    names = [n for n in c.names if has_region(n)]
    fig, axes = subplots(figsize=(8.2, 5.6), squeeze=False)
    ax = axes[0, 0]
    for name in names:
        i = c.names.index(name)
        draw_region(ax, name, f"C{i}", name, (-5, 3, -4, 4), 321, alpha=0.12, lw=1.5)
        dt = c.stability.get(name, {}).get("largest_stable_dt", 0.0)
        if c.spectrum is not None and 0 < dt < np.inf:
            z = c.spectrum * dt
            ax.plot(
                z.real,
                z.imag,
                "o",
                color=f"C{i}",
                mfc="none",
                ms=7,
                label=f"λ·Δt* for {name} (Δt* = {dt:.4g})",
            )
    ax.set_xlim(-5, 3)
    ax.set_ylim(-4, 4)
    region_axes(
        ax,
        "Re(λ Δt) (dimensionless)",
        "Im(λ Δt) (dimensionless)",
        "Stability regions |R(λΔt)| ≤ 1 (shaded), measured on y' = λy",
    )
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return save_figure(fig, path)


def _log_axes(ax):
    """Major grid, no minor tick labels (they collide on short log ranges), legend outside."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    lo, hi = ax.get_xlim()
    if ax.get_xscale() == "log" and hi / lo < 1e3:  # few decades: label 1, 2, 5 × 10^k
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))


def has_region(name) -> bool:
    cls = _steppers.REGISTRY.resolve(name)
    return cls.general


def stable_text(stab) -> str:
    dt = stab["largest_stable_dt"]
    if dt == 0:
        return "0 (unstable)"
    if dt == np.inf:
        return f"> {stab['searched'][1]:.3g}"
    return f"{dt:.4g}"


def plot_stability_regions(names, path, *, extent=(-5.0, 3.0, -4.0, 4.0), resolution=401):
    """Draw ``|R(z)| ≤ 1`` (measured, :func:`stability_function`) for each stepper in
    ``names`` to a PNG at ``path``; returns the path."""
    fig, ax = subplots(figsize=(6.4, 5.6))
    for i, name in enumerate(names):
        draw_region(
            ax, name, f"C{i}", REGISTRY.resolve(name).name, extent, resolution, alpha=0.18, lw=1.6
        )
    region_axes(
        ax,
        r"Re($\lambda\,\Delta t$)",
        r"Im($\lambda\,\Delta t$)",
        r"Stability regions $|R(\lambda\Delta t)| \leq 1$ (shaded), measured",
    )
    ax.legend(loc="upper left", fontsize=9)
    return save_figure(fig, path)


def draw_region(ax, name, color, label, extent, resolution, alpha, lw) -> None:
    """Shade ``|R(z)| ≤ 1`` of stepper ``name`` on the axes ``ax`` over ``extent`` =
    (x0, x1, y0, y1), with ``resolution`` points per side."""
    x0, x1, y0, y1 = extent
    X, Y = np.meshgrid(np.linspace(x0, x1, resolution), np.linspace(y0, y1, resolution))
    R = np.abs(stability_function(name, X + 1j * Y))
    ax.contourf(X, Y, (R <= 1).astype(float), levels=[0.5, 1.5], colors=[color], alpha=alpha)
    ax.contour(X, Y, R, levels=[1.0], colors=[color], linewidths=lw)
    ax.plot([], [], color=color, lw=2, label=label)


def region_axes(ax, xlabel, ylabel, title) -> None:
    """Axes of a stability-region plot: the real and imaginary axes drawn, equal aspect."""
    ax.axhline(0, color="0.6", lw=0.6)
    ax.axvline(0, color="0.6", lw=0.6)
    ax.set_aspect("equal")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)

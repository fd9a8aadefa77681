"""Figures of :func:`physres.validation.validate`: error vs time, trajectories, drift."""

from __future__ import annotations

import numpy as np

from .._output import save_figure, subplots


def error_vs_time(path, m, name):
    fig, axes = subplots(squeeze=False, figsize=(7.4, 4.6))
    ax = axes[0, 0]
    t = np.asarray(m["t"])
    rel = np.asarray(m["relative_l2"]["per_step_mean"], float)
    nr = np.asarray(m["nrmse"]["per_step_mean"], float)
    ax.semilogy(t, np.maximum(rel, 1e-17), label="relative L2 error (mean over trajectories)")
    ax.semilogy(t, np.maximum(nr, 1e-17), label="nRMSE (mean over trajectories)")
    thr = m["valid_prediction_time"]["threshold"]
    ax.axhline(thr, color="k", ls=":", lw=1, label=f"VPT threshold (nRMSE = {thr:g})")
    ax.set_xlabel("time t (system time units)")
    ax.set_ylabel("error vs reference (dimensionless)")
    ax.set_title(f"{name} on {m['system']}: error vs time")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def overlay(path, run, f, name):
    pred, ref = np.array(run.overlay_pred), np.array(run.overlay_ref)
    n_comp = int(np.prod(f.state_shape))
    if n_comp <= 4:
        labels = {2: ["q", "p"], 3: ["x", "y", "z"]}.get(n_comp, [f"x[{i}]" for i in range(n_comp)])
        fig, axes = subplots(n_comp, 1, figsize=(7.4, 2.3 * n_comp), sharex=True, squeeze=False)
        for c in range(n_comp):
            ax = axes[c, 0]
            for i in range(len(pred)):
                ax.plot(
                    run.t,
                    ref.reshape(len(ref), ref.shape[1], -1)[i, :, c].real,
                    color=f"C{i}",
                    lw=2.2,
                    alpha=0.35,
                    label=f"reference, trajectory {run.idx[i]}",
                )
                ax.plot(
                    run.t,
                    pred.reshape(len(pred), pred.shape[1], -1)[i, :, c].real,
                    "--",
                    color=f"C{i}",
                    lw=1.2,
                    label=f"{name}, trajectory {run.idx[i]}",
                )
            ax.set_ylabel(labels[c])
            ax.grid(True, alpha=0.3)
            r = ref.reshape(len(ref), ref.shape[1], -1)[:, :, c].real
            lo, hi, pad = r.min(), r.max(), 0.5 * (r.max() - r.min() + 1e-12)
            ax.set_ylim(lo - pad, hi + pad)  # a diverging prediction leaves the axes
        axes[0, 0].legend(fontsize=7, ncol=2, loc="upper right")
        axes[0, 0].set_title(f"{name} (dashed) over the reference (thick) on {f.system_name}")
        axes[-1, 0].set_xlabel("time t (system time units)")
        return save_figure(fig, path)
    # grid states: snapshots of the first trajectory along the grid
    x = next(iter(f.grid.values()), None)
    flat_r = ref[0].reshape(ref.shape[1], -1)
    flat_p = pred[0].reshape(pred.shape[1], -1)
    x = (
        np.asarray(x)
        if x is not None and np.size(x) == flat_r.shape[1]
        else np.arange(flat_r.shape[1])
    )
    fig, axes = subplots(squeeze=False, figsize=(7.4, 4.6))
    ax = axes[0, 0]
    value = (lambda a: np.abs(a) ** 2) if np.iscomplexobj(flat_r) else (lambda a: a)
    for k, j in enumerate(np.linspace(0, flat_r.shape[0] - 1, 3).astype(int)):
        ax.plot(
            x,
            value(flat_r[j]),
            color=f"C{k}",
            lw=2.2,
            alpha=0.35,
            label=f"reference, t = {run.t[j]:.3g}",
        )
        ax.plot(
            x, value(flat_p[j]), "--", color=f"C{k}", lw=1.2, label=f"{name}, t = {run.t[j]:.3g}"
        )
    ax.set_xlabel("grid coordinate" if f.grid else "state component index")
    ax.set_ylabel("|ψ|² (density)" if np.iscomplexobj(flat_r) else "state value")
    ax.set_title(f"{name} (dashed) over the reference (thick), trajectory {run.idx[0]}")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    return save_figure(fig, path)


def drift(path, run, name):
    names = list(run.drift)
    fig, axes = subplots(1, len(names), figsize=(7.4 * len(names), 4.6), squeeze=False)
    for ax, inv in zip(axes[0], names, strict=True):
        d = np.abs(np.concatenate(run.drift[inv]))
        worst = np.where(np.isnan(d), -np.inf, d).max(0)  # frames after a failure stay blank
        worst = np.where(worst == -np.inf, np.nan, np.maximum(worst, 1e-17))
        ax.semilogy(run.t, worst, label=f"{name} (worst)")
        if inv in run.ref_drift:
            r = np.abs(np.concatenate(run.ref_drift[inv]))
            ax.semilogy(run.t, np.maximum(r.max(0), 1e-17), label="reference (worst)")
        ax.set_xlabel("time t (system time units)")
        ax.set_ylabel(f"|{inv}(t) − {inv}(0)| / |{inv}(0)|")
        ax.set_title(f"{inv} drift over {d.shape[0]} trajectories")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=8)
    return save_figure(fig, path)

"""`validate(stepper, path)`: a stepper against the reference trajectories of an HDF5 file."""

from __future__ import annotations

import math

import numpy as np
import torch

from .. import _checks
from ..rollout import rollout
from . import _validate_figures as F
from . import metrics as M
from .report import Report
from .schema import SCHEMA_VERSION

N_OVERLAY = 3  # trajectories kept for the overlay figure
COMPILE = False  # the eager loop: its wall time is the stepper's cost, not the compiler's


def validate(
    stepper,
    path,
    out=None,
    *,
    n_traj: int | None = None,
    split: str | None = None,
    substeps: int = 1,
    batch_size: int = 64,
    threshold: float = 0.5,
    lyapunov_exponent: float | None = None,
    system: str | None = None,
    system_params: dict | None = None,
    progress: bool = True,
) -> Report:
    """Roll ``stepper`` out from the initial states of the file at ``path`` and score it.

    The stepper runs on the file's time grid: learned maps at the step they were trained for
    (a whole number of saved intervals), known-physics steppers at ``dt_save / substeps``.
    Each saved frame after the initial one is scored (the initial state is the input, never
    scored): relative L2 error and nRMSE per step, valid prediction time, drift of the
    system's invariants, and the cost (wall time, steps, field evaluations) beside the
    reference's recorded cost (``/stats``).

    Parameters
    ----------
    stepper : Stepper or str
        A stepper (learned or known physics), or a registered stepper name, built on the
        file's system.
    path : str or Path
        A physres trajectory file (HDF5 schema v1).
    out : str or Path, optional
        Also save the report there (``report.json``, ``report.md``, PNG figures).
    n_traj : int, optional
        Score only the first ``n_traj`` trajectories (of the split).
    split : ``"train"``, ``"val"`` or ``"test"``, optional
        Score only that split (:func:`physres.data.split_indices` with its defaults, as the
        training windows use): ``"test"`` for a model trained on this file.
    substeps : int
        Steps per saved interval for known-physics steppers.
    batch_size : int
        Trajectories rolled out together.
    threshold : float
        nRMSE threshold of the valid prediction time.
    lyapunov_exponent : float, optional
        The true system's largest Lyapunov exponent: VPT is then also given in Lyapunov times.
    system, system_params : str and dict, optional
        The system (and its parameters) the stepper was trained on, when known, e.g. from a
        model file's metadata; checked against the file.
    progress : bool
        Show a progress bar.

    Returns
    -------
    Report with ``.metrics`` (dict), ``.summary`` (rows) and ``.save(dir)``.
    """
    from .. import data, steppers

    with data.open(path) as f:
        sys_ = f.make_system()
        if isinstance(stepper, str):
            stepper = steppers.get(stepper, sys_.rhs)
        _check_match(stepper, f, system, system_params)
        frame_step, dt = _step_size(stepper, f, substeps)
        idx = _indices(f, n_traj, split)
        run = _Run(stepper, f, sys_, idx, frame_step, dt, batch_size, progress)
        result = _summarise(run, f, stepper, threshold, lyapunov_exponent)
        report = _report(result, run, f, stepper)
    if out is not None:
        report.save(out)
    return report


# ---- checks ---------------------------------------------------------------------------------
def _check_match(stepper, f, system, system_params=None):
    from ..steppers import Stepper, field_owner
    from ..systems import System

    if not isinstance(stepper, Stepper):
        raise TypeError(
            f"`stepper` must be a physres Stepper or a stepper name, got {type(stepper).__name__}"
        )
    shape = getattr(stepper, "state_shape", None)
    if shape is not None and tuple(shape) != tuple(f.state_shape):
        raise ValueError(
            f"`stepper` works on states of shape {tuple(shape)}, but {f.path} holds "
            f"states of shape {tuple(f.state_shape)} (system {f.system_name!r})"
        )
    complex_state = getattr(stepper, "complex_state", None)
    if complex_state is not None and bool(complex_state) != f.dtype.is_complex:
        raise TypeError(
            f"`stepper` expects {'complex' if complex_state else 'real'} states, but "
            f"{f.path} holds {f.dtype} states"
        )
    owner = field_owner(getattr(stepper, "field", None))
    names = {}
    if system is not None:
        names["the `system` argument"] = system
    recorded = getattr(stepper, "system_name", None)
    if recorded:
        names["the model"] = recorded
    if isinstance(owner, System):
        if owner.dtype != f.dtype:
            raise TypeError(f"`stepper`'s system has dtype {owner.dtype}, {f.path} holds {f.dtype}")
        names["the stepper's field"] = owner.name
        if owner.name == f.system_name and owner.params != f.system_params:
            raise ValueError(
                f"`stepper`'s system has parameters {owner.params}, but {f.path} was "
                f"generated with {f.system_params}"
            )
    for who, name in names.items():
        if name != f.system_name:
            raise ValueError(
                f"system mismatch: {who} says {name!r}, but {f.path} holds "
                f"{f.system_name!r} trajectories"
            )
    if system_params is not None and dict(system_params) != f.system_params:
        raise ValueError(
            f"system parameters differ: the stepper was made for {system_params}, "
            f"but {f.path} was generated with {f.system_params}"
        )


def _step_size(stepper, f, substeps) -> tuple[int, float]:
    """(saved frames per model step, dt of one step)."""
    substeps = _checks.positive_int("substeps", substeps)
    dt_save = float(f.dt_save)
    if f.t.size < 2:
        raise ValueError(f"{f.path} holds a single time; nothing to validate")
    if not np.allclose(np.diff(f.t), dt_save, rtol=1e-9, atol=1e-12 * max(1.0, abs(f.t[-1]))):
        raise ValueError(f"{f.path} has an uneven time grid; validate needs evenly saved frames")
    model_dt = getattr(stepper, "dt", None)
    if model_dt is not None and getattr(stepper, "fixed_dt", False):
        k = round(model_dt / dt_save)
        if k < 1 or not math.isclose(k * dt_save, model_dt, rel_tol=1e-6):
            raise ValueError(
                f"the model steps with dt = {model_dt:g}, which is not a whole number "
                f"of the file's saved interval {dt_save:g} ({f.path})"
            )
        if substeps != 1:
            raise ValueError(
                "`substeps` applies to known-physics steppers; this model steps "
                f"only at its training dt = {model_dt:g}"
            )
        return k, model_dt
    return 1, dt_save / substeps


def _indices(f, n_traj, split) -> np.ndarray:
    from ..data import split_indices

    idx = np.arange(len(f))
    if split is not None:
        if split not in ("train", "val", "test"):
            raise ValueError(f"`split` must be 'train', 'val' or 'test', got {split!r}")
        idx = split_indices(len(f))[split]
    if n_traj is not None:
        n_traj = _checks.positive_int("n_traj", n_traj)
        idx = idx[:n_traj]
    if idx.size == 0:
        raise ValueError(f"no trajectory of {f.path} to validate (split {split!r})")
    return idx


# ---- the run ----------------------------------------------------------------------------------
class _Run:
    """Rolls out batches of trajectories and keeps what the metrics and figures need."""

    def __init__(self, stepper, f, system, idx, frame_step, dt, batch_size, progress):
        from tqdm.auto import tqdm

        batch_size = _checks.positive_int("batch_size", batch_size)
        self.frames = np.arange(0, f.t.size, frame_step)  # saved frames the stepper lands on
        self.t = f.t[self.frames]
        self.dt = dt
        per_frame = round(frame_step * float(f.dt_save) / dt)
        n_steps = (self.frames.size - 1) * per_frame
        device = next((p.device for p in stepper.parameters()), torch.device("cpu"))
        self.sq_err = np.zeros((idx.size, self.frames.size - 1))  # Σ|e|² per scored frame
        self.rel = np.zeros_like(self.sq_err)
        self.ref_sum = self.ref_sq = 0.0
        self.ref_count = 0
        self.drift, self.ref_drift = {}, {}
        self.overlay_pred, self.overlay_ref = [], []
        self.wall_s, self.nfev, self.n_steps, self.n_calls, self.failure = 0.0, 0, 0, 0, None
        bar = tqdm(
            total=idx.size * n_steps,
            disable=not progress,
            desc="validate",
            unit="step",
            leave=False,
        )
        stepper.nfev = 0
        for start in range(0, idx.size, batch_size):
            sel = idx[start : start + batch_size]
            ref = f.states[sel][:, self.frames]  # (B, n_f, *state)
            x = torch.from_numpy(ref[:, 0]).to(device)
            stepper.check_call(x, dt)
            pred, wall, fail = _rollout(
                stepper, x, float(f.t[0]), dt, per_frame, self.frames.size - 1, bar
            )
            self.wall_s += wall
            self.n_calls += (pred.shape[1] - 1) * per_frame
            self.n_steps = max(self.n_steps, (pred.shape[1] - 1) * per_frame)
            if fail is not None and self.failure is None:
                self.failure = {
                    "trajectory": int(sel[0]),
                    "time": float(self.t[pred.shape[1] - 1]) + dt,
                    "reason": fail,
                }
            pred = _pad(pred.cpu().numpy(), self.frames.size)
            with np.errstate(over="ignore", invalid="ignore"):  # huge states → inf errors
                self._score(slice(start, start + sel.size), pred, ref, system, f, sel)
        bar.close()
        self.nfev = int(stepper.nfev)
        self.n_traj = int(idx.size)
        self.idx = idx
        self.per_frame = per_frame

    def _score(self, rows, pred, ref, system, f, sel):
        err = pred[:, 1:] - ref[:, 1:]
        self.sq_err[rows] = M._sq_norm(err)
        self.rel[rows] = M.relative_l2(pred, ref, context=1)
        r = ref[:, 1:]
        self.ref_sum = self.ref_sum + r.reshape(-1, *r.shape[2:]).sum(0)
        self.ref_sq = self.ref_sq + (np.abs(r) ** 2).reshape(-1, *r.shape[2:]).sum(0)
        self.ref_count += r.shape[0] * r.shape[1]
        finite = np.isfinite(pred).reshape(pred.shape[0], pred.shape[1], -1).all(-1)
        safe = np.where(finite[(...,) + (None,) * (pred.ndim - 2)], pred, ref)
        with torch.no_grad():
            inv = system.invariants(torch.from_numpy(safe.reshape(-1, *pred.shape[2:])))
        for name, values in inv.items():
            v = values.cpu().numpy().real.reshape(pred.shape[0], pred.shape[1])
            rel = bool(np.all(np.abs(v[:, 0]) > 0))
            d = np.where(finite, M.invariant_drift(v, relative=rel), np.nan)
            self.drift.setdefault(name, []).append(d)
            if name in f.invariants:
                rv = f.invariants[name][np.sort(sel)][:, self.frames]
                rv = rv[np.argsort(np.argsort(sel))]
                self.ref_drift.setdefault(name, []).append(M.invariant_drift(rv, relative=rel))
        k = N_OVERLAY - len(self.overlay_pred)
        if k > 0:
            self.overlay_pred.extend(pred[:k])
            self.overlay_ref.extend(ref[:k])


def _rollout(stepper, x, t0, dt, per_frame, n_frames, bar):
    """Steps ``per_frame`` times per saved frame through :func:`physres.rollout`; returns
    (B, n_done + 1, *state), the stepping wall time and the failure (text) or None."""

    def advance(n, t, state):
        if n:
            bar.update(per_frame * state.shape[0])

    with torch.no_grad():
        out = rollout(
            stepper,
            x,
            dt,
            n_frames * per_frame,
            t0=t0,
            save_every=per_frame,
            compile=COMPILE,
            observer=advance,
            on_divergence="return",
            full_output=True,
        )
    fail = None
    if out.status == "solver failed":
        fail = f"implicit solve failed: {str(out.failure).splitlines()[0]}"
    elif out.status == "diverged":
        fail = "non-finite state (diverged)"
    return out.trajectory, out.wall_s, fail


def _pad(pred: np.ndarray, n: int) -> np.ndarray:
    if pred.shape[1] == n:
        return pred
    pad = np.full((pred.shape[0], n - pred.shape[1], *pred.shape[2:]), np.nan, dtype=pred.dtype)
    return np.concatenate([pred, pad], axis=1)


# ---- metrics --------------------------------------------------------------------------------
def _summarise(run, f, stepper, threshold, lyap) -> dict:
    n_comp = int(np.prod(f.state_shape))
    mean = run.ref_sum / run.ref_count
    var = np.maximum(run.ref_sq / run.ref_count - np.abs(mean) ** 2, 0.0)
    sigma = math.sqrt(float(np.mean(var)))
    nrmse = np.sqrt(run.sq_err / n_comp) / (sigma if sigma > 0 else np.nan)
    t_scored = run.t[1:]
    vpt = M.valid_prediction_time(nrmse, t_scored, threshold=threshold, t0=float(run.t[0]))
    m = {
        "kind": "validation",
        "schema_version": SCHEMA_VERSION,
        "stepper": getattr(stepper, "name", "") or type(stepper).__name__,
        "system": f.system_name,
        "system_params": f.system_params,
        "data": str(f.path),
        "n_traj": run.n_traj,
        "trajectories": run.idx.tolist(),
        "dt": run.dt,
        "t": t_scored,
        "nrmse_scale": sigma,
        "relative_l2": {
            "per_step_mean": _nanmean0(run.rel),
            "mean": _mean(run.rel),
            "final_mean": _mean(run.rel[:, -1]),
            "final_max": _max(run.rel[:, -1]),
        },
        "nrmse": {
            "per_step_mean": _nanmean0(nrmse),
            "mean": _mean(nrmse),
            "final_mean": _mean(nrmse[:, -1]),
        },
        "valid_prediction_time": {
            "threshold": threshold,
            "per_trajectory": vpt,
            "mean": float(np.mean(vpt)),
            "median": float(np.median(vpt)),
            "horizon": float(run.t[-1] - run.t[0]),
        },
        "invariant_drift": {},
        "cost": _cost(run, f),
        "failure": run.failure,
    }
    if lyap is not None:
        lyap = _checks.positive("lyapunov_exponent", lyap)
        m["valid_prediction_time"]["lyapunov_exponent"] = lyap
        m["valid_prediction_time"]["mean_lyapunov_times"] = float(np.mean(vpt)) * lyap
    for name, parts in run.drift.items():
        d = np.concatenate(parts)
        entry = {
            "max_abs": _max(np.abs(d)),
            "final_mean_abs": _mean(np.abs(d[:, -1])),
            "relative": bool(np.all(np.isfinite(d[:, 0]))),
        }
        if name in run.ref_drift:
            entry["reference_max_abs"] = _max(np.abs(np.concatenate(run.ref_drift[name])))
        m["invariant_drift"][name] = entry
    return m


def _cost(run, f) -> dict:
    ref = {
        k: float(np.sum(v[run.idx]))
        for k, v in f.stats.items()
        if np.issubdtype(np.asarray(v).dtype, np.number) and np.asarray(v).shape[:1] == (len(f),)
    }
    out = {
        "wall_s": run.wall_s,
        "steps": run.n_steps,
        "stepper_calls": run.n_calls,
        "nfev": run.nfev,
        "note": "steps along each trajectory; stepper calls and field evaluations act on "
        "batches of trajectories",
        "reference": ref,
        "reference_method": f.attrs.get("reference_method"),
    }
    if ref.get("wall_s") and run.wall_s > 0:
        out["speedup_vs_reference"] = ref["wall_s"] / run.wall_s
    return out


def _nanmean0(a) -> np.ndarray:
    """Mean over trajectories per frame; frames after a failure are nan (not scored)."""
    a = np.asarray(a, float)
    out = np.full(a.shape[1], np.nan)
    ok = np.isfinite(a).all(0)
    out[ok] = a[:, ok].mean(0)
    return out


def _mean(a) -> float:
    a = np.asarray(a, float)
    return float(np.mean(a)) if np.all(np.isfinite(a)) else float("nan")


def _max(a) -> float:
    a = np.asarray(a, float)
    return float(np.max(a)) if np.all(np.isfinite(a)) else float("inf")


# ---- report ---------------------------------------------------------------------------------
def _report(m, run, f, stepper) -> Report:
    name = m["stepper"]
    cost, ref = m["cost"], m["cost"]["reference"]
    vpt = m["valid_prediction_time"]
    rows = [
        {
            "quantity": "relative L2 error, final (mean)",
            name: m["relative_l2"]["final_mean"],
            "reference": None,
        },
        {"quantity": "nRMSE, final (mean)", name: m["nrmse"]["final_mean"], "reference": None},
        {
            "quantity": f"valid prediction time (nRMSE ≤ {vpt['threshold']:g}, mean, of "
            f"{vpt['horizon']:g})",
            name: vpt["mean"],
            "reference": None,
        },
    ]
    if "mean_lyapunov_times" in vpt:
        rows.append(
            {
                "quantity": "valid prediction time (Lyapunov times)",
                name: vpt["mean_lyapunov_times"],
                "reference": None,
            }
        )
    for inv, d in m["invariant_drift"].items():
        rows.append(
            {
                "quantity": f"{inv} drift, max {'relative' if d['relative'] else 'absolute'}",
                name: d["max_abs"],
                "reference": d.get("reference_max_abs"),
            }
        )
    rows += [
        {"quantity": "wall time (s)", name: cost["wall_s"], "reference": ref.get("wall_s")},
        {"quantity": "steps per trajectory", name: cost["steps"], "reference": None},
        {"quantity": "field evaluations", name: cost["nfev"], "reference": ref.get("nfev")},
    ]
    rows = [
        {k: ("diverged" if isinstance(v, float) and v == math.inf else v) for k, v in r.items()}
        for r in rows
    ]
    text = [
        f"`{name}` rolled out from the initial states of {m['n_traj']} trajectories of "
        f"`{f.path.name}` (system `{f.system_name}`, parameters `{f.system_params}`) with "
        f"dt = {m['dt']:g} to t = {run.t[-1]:g}; every saved frame after the initial one is "
        f"scored. nRMSE is normalised by the reference's standard deviation "
        f"({m['nrmse_scale']:.4g}). Reference: `{cost['reference_method']}`; its cost is the "
        "sum over trajectories solved one by one, the stepper's is for batches of "
        "trajectories stepped together. Field evaluations of a batched stepper count once per "
        "batch.",
    ]
    if m["failure"]:
        text += [
            "",
            f"**The rollout failed** at t = {m['failure']['time']:.4g} "
            f"(trajectory {m['failure']['trajectory']}): {m['failure']['reason']}. "
            "Frames after the failure are not scored (errors shown as diverged).",
        ]
    figs = {
        "error_vs_time.png": ("Error vs time", lambda p: F.error_vs_time(p, m, name)),
        "trajectories.png": (
            "Trajectories over the reference",
            lambda p: F.overlay(p, run, f, name),
        ),
    }
    if m["invariant_drift"]:
        figs["invariant_drift.png"] = ("Invariant drift vs time", lambda p: F.drift(p, run, name))
    return Report(
        title=f"Validation of {name} on {f.system_name}",
        metrics=m,
        summary=rows,
        text="\n".join(text),
        figures=figs,
    )

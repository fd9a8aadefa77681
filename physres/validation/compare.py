"""The explicit-vs-implicit study: several steppers on one system, side by side.

For each stepper and step size: the error at ``t_end`` against a trusted reference (the exact
exponential for linear fields, scipy otherwise), its cost (wall time, field evaluations), and
the drift of the system's invariants; per stepper: the order fitted to error vs dt (log–log
regression) and the largest stable step size found by search (see :mod:`._stability`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from .. import _checks, _output
from .. import steppers as _steppers
from .. import systems as _systems
from ..rollout import rollout
from . import _compare_figures as F
from . import _stability
from .report import Report
from .schema import SCHEMA_VERSION

FIT_MAX_ERROR = 0.1  # above this the error is not in the asymptotic regime
FIT_ROUNDOFF = 1000 * np.finfo(np.float64).eps  # per step: below n·this the error is round-off
N_SAVED = 200  # invariants are recorded at about this many times per run
REPEAT_BELOW_S = 0.2  # runs shorter than this are timed three times (the minimum is kept)
COMPILE = False  # each run is timed as the eager loop (compiling would time the compiler)


@dataclass
class RunResult:
    """One stepper at one step size.

    dt, n_steps : the step size and the steps asked for
    status : ``"ok"``, ``"diverged"`` (a non-finite state) or ``"solver failed"`` (an implicit
        solve did not converge); see :class:`physres.rollout.Rollout`
    error : relative L2 error at ``t_end``, worst trajectory (inf unless ``status == "ok"``)
    wall_s : stepping time (best of three for runs under ``REPEAT_BELOW_S``)
    nfev : field evaluations
    failed_time : time of the failing step, or None
    t : (k,) times at which the invariants were recorded
    drift : invariant → (batch, k) relative drift ``(I_t − I_0)/|I_0|`` (absolute for
        ``I_0 = 0``) along the run
    """

    dt: float
    n_steps: int
    status: str
    error: float
    wall_s: float
    nfev: int
    failed_time: float | None = None
    t: np.ndarray = field(default_factory=lambda: np.zeros(0))
    drift: dict = field(default_factory=dict)

    def max_drift(self, name: str) -> float:
        """Largest ``|drift|`` of invariant ``name`` over time and trajectories (inf when the
        run failed)."""
        return float(np.abs(self.drift[name]).max()) if self.status == "ok" else math.inf

    def to_dict(self) -> dict:
        return {
            "dt": self.dt,
            "n_steps": self.n_steps,
            "status": self.status,
            "error": self.error,
            "wall_s": self.wall_s,
            "nfev": self.nfev,
            "failed_time": self.failed_time,
        }


@dataclass
class StepperResult:
    """Everything measured for one stepper: its runs (one per dt), the fitted order and the
    stability search."""

    name: str
    nominal_order: float
    runs: list = field(default_factory=list)  # RunResult per dt, in the order of ``dts``
    fitted_order: float = math.nan
    fit_dt_range: tuple | None = None
    stability: dict | None = None

    @property
    def errors(self) -> np.ndarray:
        return np.array([r.error for r in self.runs], dtype=float)

    @property
    def wall_s(self) -> np.ndarray:
        return np.array([r.wall_s for r in self.runs], dtype=float)

    @property
    def nfev(self) -> np.ndarray:
        return np.array([r.nfev for r in self.runs], dtype=float)

    @property
    def status(self) -> list:
        return [r.status for r in self.runs]

    @property
    def drift(self) -> dict:
        """invariant → (n_dt,) max drift at each dt (inf where the run failed)."""
        names = list(self.runs[0].drift) if self.runs else []
        return {k: np.array([r.max_drift(k) for r in self.runs]) for k in names}

    @property
    def series(self) -> dict:
        """dt index → (t (k,), {invariant: (batch, k) relative drift})."""
        return {j: (r.t, r.drift) for j, r in enumerate(self.runs)}

    def to_dict(self) -> dict:
        """The stepper's entry of ``report.json`` (see docs/validation.md)."""
        return {
            "nominal_order": self.nominal_order,
            "fitted_order": self.fitted_order,
            "fit_dt_range": self.fit_dt_range,
            "errors": self.errors,
            "wall_s": self.wall_s,
            "nfev": self.nfev,
            "status": self.status,
            "invariant_drift": self.drift,
            "stability": {k: v for k, v in (self.stability or {}).items() if k != "probes"},
        }


@dataclass
class Comparison:
    """Result of :func:`compare_steppers`: one :class:`StepperResult` per stepper in
    ``results`` (name → result, in the order of ``names``). Arrays are indexed like ``dts``.

    The per-quantity views (name → value) read the records:

    errors : name → (n_dt,) relative L2 error at ``t_end``, worst trajectory (inf: diverged)
    wall_s, nfev : name → (n_dt,) cost of each run
    orders : name → fitted order (nan when fewer than two points are in the asymptotic range)
    fit_dts : name → (dt_min, dt_max) of the points used for the fit, or None
    drift : name → invariant → (n_dt,) max over time and trajectories of ``|I_t − I_0|/|I_0|``
        (``|I_t − I_0|`` for an invariant that starts at 0)
    series : name → dt index → (t (k,), {invariant: (batch, k) relative drift})
    stability : name → dict with ``largest_stable_dt`` (0: unstable at every dt tried, inf:
        stable at every dt tried), ``status``, ``criterion``, ``searched`` and ``probes``
    spectrum : eigenvalues of ``A`` (complex, (n,)) when the field is linear, else None
    """

    system: str
    params: dict
    names: list
    dts: np.ndarray
    t_end: float
    n_traj: int
    reference: str
    results: dict = field(default_factory=dict)
    spectrum: np.ndarray | None = None  # eigenvalues of A for a linear field

    def _view(self, attr) -> dict:
        return {n: getattr(r, attr) for n, r in self.results.items()}

    errors = property(lambda self: self._view("errors"))
    wall_s = property(lambda self: self._view("wall_s"))
    nfev = property(lambda self: self._view("nfev"))
    orders = property(lambda self: self._view("fitted_order"))
    fit_dts = property(lambda self: self._view("fit_dt_range"))
    drift = property(lambda self: self._view("drift"))
    series = property(lambda self: self._view("series"))
    nominal_orders = property(lambda self: self._view("nominal_order"))

    @property
    def stability(self) -> dict:
        return {n: r.stability for n, r in self.results.items() if r.stability is not None}

    # ---- summaries ------------------------------------------------------------------------
    @property
    def largest_stable_dt(self) -> dict:
        return {n: s["largest_stable_dt"] for n, s in self.stability.items()}

    @property
    def drift_index(self) -> int:
        """Index of the dt shown in the drift figure: the largest at which every run is finite."""
        ok = np.all([np.isfinite(self.errors[n]) for n in self.names], axis=0)
        return int(np.argmax(np.where(ok, self.dts, -np.inf))) if ok.any() else 0

    def to_dict(self) -> dict:
        """``report.json`` of the comparison (the schema is in docs/validation.md); floats
        that are not finite are ``None``."""
        return _output.jsonable(
            {
                "kind": "comparison",
                "schema_version": SCHEMA_VERSION,
                "system": self.system,
                "params": self.params,
                "t_end": self.t_end,
                "n_traj": self.n_traj,
                "reference": self.reference,
                "dts": self.dts,
                "steppers": {n: self.results[n].to_dict() for n in self.names},
            }
        )

    @property
    def metrics(self) -> dict:
        return self.to_dict()

    def summary(self) -> list[dict]:
        rows = []
        j = self.drift_index
        for n in self.names:
            stab = self.stability.get(n)
            nominal = self.nominal_orders[n]
            row = {
                "stepper": n,
                "order": "exact" if nominal >= _steppers.EXACT_ORDER else nominal,
                "fitted order": _round(self.orders[n], 2),
                f"error (dt={self.dts[-1]:.3g})": _num(self.errors[n][-1]),
                "wall (s)": float(np.sum(self.wall_s[n])),
            }
            for inv, values in self.drift[n].items():
                row[f"{inv} drift (dt={self.dts[j]:.3g})"] = _num(values[j])
            if stab is not None:
                row["largest stable dt"] = F.stable_text(stab)
            rows.append(row)
        return rows

    def report(self) -> Report:
        text = [
            f"System `{self.system}` with parameters `{self.params}`; {self.n_traj} initial "
            f"states from `sample_initial`, integrated to t = {self.t_end:g}. Reference: "
            f"{self.reference}. Errors are relative L2 errors at t_end, worst trajectory. "
            f"Orders are fitted by least squares to log(error) vs log(dt) over the points with "
            f"error below {FIT_MAX_ERROR:g} and above the round-off floor.",
        ]
        text += [
            "",
            "`wall (s)` is the stepping time summed over the runs; drift columns are "
            "the worst relative drift of each invariant over time and trajectories at "
            "the dt named in the header.",
        ]
        crit = {s["criterion"] for s in self.stability.values()}
        if crit:
            text += [
                "",
                "Largest stable dt: " + " ".join(sorted(crit)) + " `0 (unstable)`: "
                "unstable already at the smallest dt tried (the solution grows at every "
                "dt); `> X`: stable at every dt tried, up to X.",
            ]
        figs = {
            "error_vs_dt.png": ("Error at t_end vs step size, with fitted orders", self.plot_error),
            "work_precision.png": ("Work–precision: error vs wall time", self.plot_work),
        }
        if any(self.drift[n] for n in self.names):
            figs["invariant_drift.png"] = ("Invariant drift vs time", self.plot_drift)
        if self.stability:
            figs["amplification.png"] = (
                "Stability search: growth per step vs dt",
                self.plot_amplification,
            )
        if any(F.has_region(n) for n in self.names):
            figs["stability_regions.png"] = (
                "Stability regions of the general steppers",
                self.plot_regions,
            )
        return Report(
            title=f"Stepper comparison: {self.system}",
            metrics=self.metrics,
            summary=self.summary(),
            text="\n".join(text),
            figures=figs,
        )

    def save(self, out):
        """Write report.json, report.md and the figures under ``out``."""
        return self.report().save(out)

    # ---- figures (drawn by ._compare_figures) ----------------------------------------------
    def plot_error(self, path):
        return F.error_vs_dt(self, path)

    def plot_work(self, path):
        return F.work_precision(self, path)

    def plot_drift(self, path):
        return F.drift(self, path)

    def plot_amplification(self, path):
        return F.amplification(self, path)

    def plot_regions(self, path):
        return F.regions(self, path)


def compare_steppers(
    system,
    names,
    dts=None,
    t_end=None,
    *,
    params=None,
    n_traj: int = 4,
    seed: int = 0,
    stability: bool = True,
    stability_steps: int = 1000,
    growth: float = 10.0,
    progress: bool = True,
) -> Comparison:
    """Run each stepper in ``names`` on ``system`` at each step size in ``dts``.

    Parameters
    ----------
    system : System or str
        A system, or its registered name (built with ``params``).
    names : list of str
        Registered stepper names, e.g. ``["euler", "rk4", "backward_euler", "crank_nicolson"]``.
    dts : sequence of float, optional
        Step sizes. Default ``system.dt_save · 2^-k``, k = 0..5. Each run takes
        ``n = round(t_end / dt)`` steps of ``t_end / n`` (reported in ``dts``).
    t_end : float, optional
        Final time (default ``system.t_end``).
    n_traj, seed : initial states ``system.sample_initial(n_traj, seed)``.
    stability : bool
        Search each stepper's largest stable step size (see ``docs/validation.md``): for a
        linear field, the spectral radius of the stepper's one-step map against that of the
        exact flow; otherwise bounded growth (``growth`` × the reference's largest norm) over
        ``stability_steps`` steps.
    progress : bool
        Show a progress bar over runs.

    Returns
    -------
    Comparison (``.metrics``, ``.summary()``, ``.save(dir)``, figures).
    """
    from tqdm.auto import tqdm

    system = _system(system, params)
    names = _names(names)
    t_end = _checks.positive("t_end", system.t_end if t_end is None else t_end)
    dts = _dts(system, dts, t_end)
    n_traj = _checks.positive_int("n_traj", n_traj)
    stability_steps = _checks.positive_int("stability_steps", stability_steps)
    if _checks.positive("growth", growth) <= 1:
        raise ValueError(f"`growth` must be > 1 (a factor on the reference's norm), got {growth}")
    x0 = system.sample_initial(n_traj, seed=seed).to(system.dtype)
    A = _stability.linear_matrix(system, x0)
    ref_final, ref_label, ref_scale = _reference(system, x0, t_end, A)

    result = Comparison(
        system=getattr(system, "name", "") or type(system).__name__,
        params=dict(system.params),
        names=names,
        dts=dts,
        t_end=t_end,
        n_traj=n_traj,
        reference=ref_label,
        spectrum=None if A is None else torch.linalg.eigvals(A).cpu().numpy(),
    )
    bar = tqdm(total=len(names) * len(dts), disable=not progress, desc="compare", unit="run")
    for name in names:
        stepper = _steppers.get(name, system.rhs)
        rec = StepperResult(name=name, nominal_order=stepper.order)
        for dt in dts:
            bar.set_postfix_str(f"{name} dt={dt:.3g}")
            rec.runs.append(_run(stepper, system, x0, dt, t_end, ref_final))
            bar.update()
        if stepper.order < _steppers.EXACT_ORDER:  # exact steppers: round-off, no order
            rec.fitted_order, rec.fit_dt_range = fit_order(dts, rec.errors, np.round(t_end / dts))
        if stability:
            bar.set_postfix_str(f"{name} stability search")
            rec.stability = _stability.largest_stable_dt(
                stepper, system, x0, A=A, scale=ref_scale, steps=stability_steps, growth=growth
            )
        result.results[name] = rec
    bar.close()
    return result


def fit_order(dts, errors, n_steps=None):
    """Slope of log(error) vs log(dt) over the asymptotic points.

    Points count when finite, below ``FIT_MAX_ERROR`` and above the round-off floor
    ``n_steps · 1000 ε``. Returns ``(order, (dt_min, dt_max))`` or ``(nan, None)`` when fewer
    than two points qualify.
    """
    dts, errors = np.asarray(dts, float), np.asarray(errors, float)
    floor = 0.0 if n_steps is None else np.asarray(n_steps, float) * FIT_ROUNDOFF
    ok = np.isfinite(errors) & (errors < FIT_MAX_ERROR) & (errors > floor)
    if ok.sum() < 2:
        return float("nan"), None
    slope = np.polyfit(np.log(dts[ok]), np.log(errors[ok]), 1)[0]
    return float(slope), (float(dts[ok].min()), float(dts[ok].max()))


# ---- helpers -------------------------------------------------------------------------------
def _system(system, params):
    if isinstance(system, str):
        return _systems.get(system, **(params or {}))
    if params:
        raise ValueError("`params` is only used with a system name; got a System instance")
    if not isinstance(system, _systems.System):
        raise TypeError(
            f"`system` must be a System or a registered name, got {type(system).__name__}"
        )
    return system


def _names(names):
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    names = list(names)
    if not names:
        raise ValueError("`names` must list at least one stepper")
    for n in names:
        _steppers.REGISTRY.resolve(n)  # unknown names → ValueError listing the valid ones
    if len(set(names)) != len(names):
        raise ValueError(f"`names` has duplicates: {names}")
    return names


def _dts(system, dts, t_end):
    if dts is None:
        dts = system.dt_save * 2.0 ** -np.arange(6)
    values = [_checks.positive("dts", float(d)) for d in np.atleast_1d(np.asarray(dts, float))]
    if not values:
        raise ValueError("`dts` must not be empty")
    if max(values) > t_end:
        raise ValueError(f"`dts` must not exceed t_end = {t_end:g}, got {max(values):g}")
    n = np.maximum(1, np.round(t_end / np.array(sorted(values, reverse=True))))
    return t_end / n  # decreasing, each dividing t_end


def _reference(system, x0, t_end, A):
    """Final reference states (batch, *state_shape), a label, and the largest reference norm."""
    if A is not None:  # scipy's expm: accurate to round-off, independent of the steppers
        from scipy.linalg import expm

        E = torch.from_numpy(expm(t_end * A.cpu().numpy())).to(x0.device)
        flat = x0.reshape(x0.shape[0], -1).to(E.dtype)
        final = (flat @ E.T).reshape(x0.shape)
        return (
            final,
            "the exact flow exp(t·A) (scipy.linalg.expm; the field is linear)",
            _scale(x0, final),
        )
    try:
        from .. import reference
    except ImportError:  # pragma: no cover - reference is part of physres
        raise ValueError(
            "a nonlinear system needs physres.reference for its reference "
            "solution, which is not available"
        ) from None
    t = np.linspace(0.0, t_end, 101)
    ref = torch.as_tensor(reference.solve(system, x0, t))
    label = (
        f"scipy `{system.reference_method}` (rtol {system.reference_rtol:g}, "
        f"atol {system.reference_atol:g})"
    )
    return (
        ref[:, -1],
        label,
        float(ref.abs().reshape(ref.shape[0], ref.shape[1], -1).norm(dim=-1).max()),
    )


def _scale(*xs) -> float:
    return max(float(x.abs().reshape(x.shape[0], -1).norm(dim=1).max()) for x in xs)


def _run(stepper, system, x0, dt, t_end, ref_final) -> RunResult:
    """One fixed-step run through :func:`physres.rollout`: final error, cost, and the
    invariants' drift recorded by the observer at about ``N_SAVED`` times."""
    n = max(1, int(round(t_end / dt)))
    stride = max(1, n // N_SAVED)
    inv0 = {k: v.detach() for k, v in system.invariants(x0).items()}
    scale = {
        k: torch.where(v.abs() > 0, v.abs(), torch.ones_like(v.abs())) for k, v in inv0.items()
    }
    times, values = [], {k: [] for k in inv0}

    def record(i, t, x):
        times.append(i * dt)
        for k, v in system.invariants(x).items():
            values[k].append(((v - inv0[k]) / scale[k]).real)

    def run(observer, save_every):
        stepper.nfev = 0
        with torch.no_grad():
            return rollout(
                stepper,
                x0,
                dt,
                n,
                save_every=save_every,
                compile=COMPILE,
                observer=observer,
                on_divergence="return",
                full_output=True,
            )

    out = run(record, stride)
    nfev = stepper.nfev
    ok = out.failure is None
    if ok and n % stride:  # the final state is recorded too
        record(n, out.t_final, out.final)
    error = _final_error(out.final, ref_final) if ok else math.inf
    wall = out.wall_s
    if math.isfinite(error) and wall < REPEAT_BELOW_S:  # short runs: best of three
        wall = min(wall, *(run(None, n).wall_s for _ in range(2)))
    drift = {k: torch.stack(v, 1).cpu().numpy() for k, v in values.items()}
    return RunResult(
        dt=float(dt),
        n_steps=n,
        status=out.status,
        error=error,
        wall_s=wall,
        nfev=int(nfev),
        failed_time=None if ok else out.t0 + (out.steps + 1) * dt,
        t=np.array(times),
        drift=drift,
    )


def _final_error(final, ref) -> float:
    if final is None:
        return float("inf")
    e = (final - ref).abs().reshape(ref.shape[0], -1).norm(dim=1)
    return float((e / ref.abs().reshape(ref.shape[0], -1).norm(dim=1)).max())


def _round(v, k):
    return None if not np.isfinite(v) else round(float(v), k)


def _num(v):
    return float(v) if np.isfinite(v) else ("diverged" if v == np.inf else None)

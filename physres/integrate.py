"""Adaptive step-size driver for any stepper.

The local error of each step is estimated by the stepper's embedded pair when it has one
(``error_order`` and ``_step_with_error``: ``dopri5``, ``tsit5``, ``bosh3``, ...), and by step
doubling otherwise: one step of ``h`` and two of ``h/2`` differ by ``(2^p - 1)·err`` for a method
of order ``p``, and the two-half-step result is kept. An integral controller (scipy's RK45)
sizes the next step for embedded pairs, a PI controller for step doubling.

Two loops (:mod:`physres._adaptive`): per sample, where every sample accepts, rejects and sizes
its own step (the default for steppers that declare ``per_sample`` and have an embedded pair),
and shared, where one step size serves the whole batch and the worst sample sets it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch

from . import _checks
from ._adaptive import compiled as _compiled
from ._adaptive import per_sample as _per_sample
from ._adaptive import shared as _shared
from ._adaptive.control import Controller, Trial, initial_step
from .errors import CompileFallbackWarning, Status

__all__ = ["Solution", "Status", "integrate"]

COMPILE_MODES = ("auto", True, False)
GLOBAL_ERROR_TIGHTENING = 32  # the reference solve for `global_error` runs at rtol/32, atol/32


@dataclass
class Solution:
    """Result of :func:`integrate`.

    t : Tensor (n_t,) float64 — output times (decreasing for backward integration).
    x : Tensor (batch, n_t, *state_shape) — states at ``t``; NaN where a sample failed before
        reaching them (``throw=False``).
    status : Tensor (batch,) int64 — a :class:`~physres.errors.Status` code per sample.
    stats : dict — ``n_accepted``, ``n_rejected`` (ints for the shared step, (batch,) tensors
        per sample), ``nfev`` (batched field evaluations of this solve), ``nfev_per_sample``
        (per-sample mode), ``n_stepper_calls`` (shared), ``per_sample``, ``wall_s`` (compilation
        included), ``compile`` (``compiled``, ``compile_s``, ``fallback``), and with
        ``global_error=True``: ``global_error`` and ``global_error_abs``, each (batch,).
    """

    t: torch.Tensor
    x: torch.Tensor
    stats: dict = field(default_factory=dict)
    status: torch.Tensor | None = None

    @property
    def success(self) -> bool:
        """True when every sample reached the end of ``t_span``."""
        return self.status is None or bool((self.status == Status.SUCCESS).all())


def integrate(
    stepper,
    x0: torch.Tensor,
    t_span,
    rtol: float = 1e-6,
    atol: float = 1e-9,
    t_eval=None,
    *,
    first_step: float | None = None,
    max_steps: int = 100_000,
    safety: float = 0.9,
    per_sample: bool | None = None,
    throw: bool = True,
    global_error: bool = False,
    progress: bool = False,
    compile="auto",
) -> Solution:
    """Integrate from ``t_span[0]`` to ``t_span[1]`` with adaptive steps of ``stepper``.

    Parameters
    ----------
    stepper : Stepper with an ``order`` attribute.
    x0 : Tensor, shape (batch, *state_shape)
    t_span : (t0, t1), t1 != t0; t1 < t0 integrates backward (``t_eval`` then decreasing).
    rtol, atol : the LOCAL error of every step is kept below ``atol + rtol·max(|x_n|, |x_n+1|)``
        in the RMS norm over state components, as in scipy. The global error at the end can
        be larger (errors accumulate and grow with the flow); ``global_error=True`` measures it.
    t_eval : times in ``t_span`` (monotone in its direction) to report; steps land on them
        exactly. Default: every accepted step (shared step), or ``t_span``'s two ends (per
        sample: each sample has its own steps).
    first_step : initial step size; default from the field's scale (Hairer's heuristic), per
        sample.
    max_steps : accepted plus rejected steps (per sample in per-sample mode) before the status
        ``MAX_STEPS``.
    safety : factor on the controller's optimal step.
    per_sample : each sample accepts, rejects and sizes its own step, and finished samples stop
        being stepped (torchode's control). The field then receives ``t`` as a float64 tensor
        of shape (n_running,) ((batch,) when compiled). Default: True when the stepper
        declares ``per_sample`` and has an embedded error estimate (a sample's accuracy is then
        not set by the batch's worst one, and each costs only its own steps); False otherwise
        (the shared step, where the field receives ``t`` as a float: pass
        ``per_sample=False`` for fields that need that).
    throw : raise when a sample fails (:class:`~physres.errors.StepSizeError`, or
        :class:`~physres.errors.DivergenceError` for non-finite states); with ``throw=False``
        return the partial solution: ``sol.status`` says why, states not reached are NaN.
    global_error : also solve at ``rtol/32, atol/32`` on the same output times and report
        their difference per sample: ``stats["global_error"]``, the largest over output times
        of the RMS over components of ``|x − x_ref| / (atol + rtol·|x_ref|)`` (≈ 1 means the
        global error is about the tolerance; ≫ 1 means the local control let it grow), and
        ``stats["global_error_abs"]``, the largest ``|x − x_ref|``. The reference's own error
        is about ``32^(-q/(q+1))`` of the estimate (q the estimate's order): a few per cent
        for fifth-order pairs, ~20% for first-order methods. Costs a second, tighter solve.
    progress : show a progress bar (a compiled solve updates it once, at the end).
    compile : "auto", True, False or dict
        Run the per-sample loop of an embedded pair compiled whole: stages, error norm,
        per-sample accept/reject and step-size update in one ``torch.compile`` (inductor)
        ``while_loop`` that returns to Python only when every sample has finished
        (:mod:`physres._adaptive.compiled`). Explicit pairs take the eager loop's accepted and
        rejected steps and ``nfev``, states equal to round-off. ESDIRK pairs (``kvaerno5``,
        ``kvaerno3``) run a masked per-sample simplified Newton (Jacobian and ``I − γh·J``
        once per step, at most ``max_iter`` iterations per stage, a sample whose stages do not
        converge rejects its step): a different algorithm from the eager one, with its own
        steps and the same tolerance-level accuracy. Compiling takes ~20 s (explicit) to a
        few minutes (ESDIRK) once per signature (stepper, state shape, dtype, number of output
        times, tolerances, ``max_steps``, ``throw``, Newton options), reported as
        ``stats["compile"]["compile_s"]``; new initial states, spans and output times reuse
        it. ``True`` compiles and warns (:class:`~physres.errors.CompileFallbackWarning`)
        when it must run eagerly instead (gradients needed, step doubling, the shared step,
        complex or Newton–Krylov-sized implicit states, a failed compilation); ``"auto"``
        compiles only when it pays: no gradient is needed and the loop is compiled already,
        or eager solves of the same signature have taken
        ``_adaptive.compiled.AUTO_MIN_SECONDS`` in this process; otherwise, and silently on
        failure, it runs eagerly. A dict compiles with those inductor options.

    Returns
    -------
    Solution
    """
    sol = _solve(
        stepper,
        x0,
        t_span,
        rtol,
        atol,
        t_eval,
        first_step=first_step,
        max_steps=max_steps,
        safety=safety,
        per_sample=per_sample,
        throw=throw,
        progress=progress,
        compile=compile,
    )
    if global_error:
        sol.stats.update(
            _global_error(
                stepper, x0, t_span, sol, rtol, atol, first_step, max_steps, safety, compile
            )
        )
    return sol


def _solve(
    stepper,
    x0,
    t_span,
    rtol,
    atol,
    t_eval,
    *,
    first_step,
    max_steps,
    safety,
    per_sample,
    throw,
    progress,
    compile="auto",
) -> Solution:
    options = None
    if isinstance(compile, dict):
        options, compile = dict(compile), True
    elif not any(compile is m or (isinstance(m, str) and compile == m) for m in COMPILE_MODES):
        raise ValueError(
            f"`compile` must be 'auto', True, False or a dict of inductor options, got {compile!r}"
        )
    t0, t1, direction = _span(t_span)
    rtol = _checks.positive("rtol", rtol)
    atol = _checks.positive("atol", atol, allow_zero=True)
    max_steps = _checks.positive_int("max_steps", max_steps)
    safety = _checks.positive("safety", safety)
    order = getattr(stepper, "order", None)
    if not isinstance(order, int) or order < 1:
        raise TypeError("`stepper` must have an integer `order` >= 1 (a physres Stepper)")
    span = abs(t1 - t0)
    stepper.check_call(x0, span)
    outputs = _outputs(t_eval, t0, t1, direction)
    trial = Trial(stepper)
    supports = bool(getattr(stepper, "per_sample", False))
    if per_sample is None:
        per_sample = supports and trial.embedded
    elif per_sample and not supports:
        raise ValueError(
            f"`per_sample=True` needs a stepper that takes per-sample t and dt "
            f"(`per_sample = True`); {type(stepper).__name__} does not: use "
            "per_sample=False"
        )
    # embedded pairs: scipy's RK45 control (I, growth <= 10); step doubling: PI, growth <= 5
    ctrl = (
        Controller(q=trial.q, safety=safety)
        if trial.embedded
        else Controller(q=trial.q, safety=safety, ki=0.7, kp=0.4, max_factor=5.0)
    )
    batch = x0.shape[0]
    start = time.perf_counter()
    nfev0 = stepper.nfev
    t_start = torch.full((batch,), t0, dtype=torch.float64, device=x0.device) if per_sample else t0
    f0 = None  # f(t0, x0): checks the field's shape, seeds the first step and FSAL
    if getattr(stepper, "field", None) is not None:
        f0 = _checks.field_value(stepper.field, stepper.f(t_start, x0), x0)
    if first_step is not None:
        h0 = torch.full(
            (batch,), min(_checks.positive("first_step", first_step), span), dtype=torch.float64
        )
    elif f0 is not None:
        h0 = initial_step(stepper.f, x0, f0, t_start, direction, span, trial.q, rtol, atol)
    else:
        h0 = torch.full((batch,), 1e-3 * span, dtype=torch.float64)
    if not trial.fsal:
        f0 = None
    bar = _progress(span, progress, getattr(stepper, "name", ""))
    restore = _loosen_newton(stepper, 1e-3 * rtol, 1e-3 * atol)
    common = dict(rtol=rtol, atol=atol, max_steps=max_steps, throw=throw, stepper=stepper)
    report = {"compiled": False, "compile_s": 0.0, "fallback": None}
    forced = compile is True
    try:
        if per_sample:
            out_times = outputs or [t0, t1]
            args = (trial, ctrl, x0, f0, t0, t1, direction, out_times, h0)
            key = reason = result = None
            if compile is not False:
                reason = _compiled.unsupported(stepper, trial, x0)
                key = _compiled.signature(
                    stepper, x0, len(out_times), ctrl, direction, rtol, atol, max_steps, throw,
                    options,
                )  # fmt: skip
                if reason is None and _compiled.wanted(key, forced):
                    result = _compiled.run(
                        *args, key=key, options=options, forced=forced, report=report, **common
                    )
                elif forced:
                    _fallback_warning(
                        stepper, reason or "its compilation failed before in this process", report
                    )
            if result is None:
                eager_start = time.perf_counter()
                result = _per_sample.run(*args, bar=bar if progress else None, **common)
                if compile == "auto" and reason is None:
                    _compiled.note_eager(key, time.perf_counter() - eager_start)
            else:
                bar.update(span)
            states, status, n_acc, n_rej, nfev_s = result
            t_out = torch.tensor(outputs or [t0, t1], dtype=torch.float64)
            stats = {"n_accepted": n_acc, "n_rejected": n_rej, "nfev_per_sample": nfev_s}
        else:
            if forced:
                _fallback_warning(
                    stepper, "the shared step (per_sample=False) runs eagerly", report
                )
            ts, xs, status, n_acc, n_rej = _shared.run(
                trial, ctrl, x0, f0, t0, t1, direction, outputs, float(h0.min()), bar=bar, **common
            )
            t_out = torch.tensor(ts, dtype=torch.float64)
            states = torch.stack(xs, dim=1)
            calls = 1 if trial.embedded else 3
            stats = {
                "n_accepted": n_acc,
                "n_rejected": n_rej,
                "n_stepper_calls": calls * (n_acc + n_rej),
            }
    finally:
        restore()
        bar.close()
    stats.update(
        nfev=stepper.nfev - nfev0,
        per_sample=bool(per_sample),
        wall_s=time.perf_counter() - start,
        compile=report,
    )
    return Solution(t=t_out, x=states, stats=stats, status=status)


def _fallback_warning(stepper, reason: str, report: dict) -> None:
    import warnings

    report["fallback"] = reason
    name = getattr(stepper, "name", "") or type(stepper).__name__
    warnings.warn(
        f"compile=True: integrate of `{name}` runs the eager loop: {reason}",
        CompileFallbackWarning,
        stacklevel=4,
    )


def _global_error(
    stepper, x0, t_span, sol, rtol, atol, first_step, max_steps, safety, compile="auto"
) -> dict:
    """Difference to a solve at rtol/32, atol/32 on the same output times, per sample."""
    k = GLOBAL_ERROR_TIGHTENING
    ref = _solve(
        stepper,
        x0,
        t_span,
        rtol / k,
        atol / k,
        sol.t,
        first_step=first_step,
        max_steps=max_steps,
        safety=safety,
        per_sample=sol.stats["per_sample"],
        throw=False,
        progress=False,
        compile=compile,
    )
    diff = (sol.x - ref.x).abs()  # (batch, n_t, *state_shape)
    scaled = diff / (atol + rtol * ref.x.abs())
    rms = scaled.square().flatten(2).mean(2).sqrt()  # (batch, n_t)
    bad = (ref.status != Status.SUCCESS) | (sol.status != Status.SUCCESS)
    nan = torch.tensor(math.nan, dtype=rms.dtype)
    return {
        "global_error": torch.where(bad, nan, rms.amax(1)),
        "global_error_abs": torch.where(bad, nan, diff.flatten(1).amax(1).real),
        "global_error_nfev": ref.stats["nfev"],
    }


def _loosen_newton(stepper, tol: float, atol: float):
    """Solve implicit stages to ``tol`` relative and ``atol`` absolute (scipy's Radau ties its
    Newton tolerance to ``rtol`` likewise) unless the user set the stepper's own ``tol`` or
    ``atol``; returns a function that restores."""
    options = getattr(stepper, "newton", None)
    if options is None or options.tol is not None:
        return lambda: None
    import dataclasses

    changes = {"tol": max(tol, 1e-13)}
    if getattr(options, "atol", "absent") is None:
        changes["atol"] = atol if atol > 0 else None
    stepper.newton = dataclasses.replace(options, **changes)

    def restore():
        stepper.newton = options

    return restore


def _span(t_span):
    try:
        t0, t1 = (float(v) for v in t_span)
    except (TypeError, ValueError):
        raise TypeError(f"`t_span` must be a pair (t0, t1) of numbers, got {t_span!r}") from None
    if not (math.isfinite(t0) and math.isfinite(t1) and t1 != t0):
        raise ValueError(
            f"`t_span` must be finite with t1 != t0 (t1 < t0 integrates backward), got ({t0}, {t1})"
        )
    return t0, t1, (1.0 if t1 > t0 else -1.0)


def _outputs(t_eval, t0, t1, direction):
    if t_eval is None:
        return None
    values = [float(v) for v in torch.as_tensor(t_eval, dtype=torch.float64).reshape(-1)]
    if not values:
        raise ValueError("`t_eval` must not be empty")
    word = "increasing" if direction > 0 else "decreasing (t1 < t0)"
    if any((b - a) * direction <= 0 for a, b in zip(values, values[1:], strict=False)):
        raise ValueError(f"`t_eval` must be strictly {word}")
    lo, hi = min(t0, t1), max(t0, t1)
    if min(values) < lo or max(values) > hi:
        raise ValueError(
            f"`t_eval` must lie within t_span = ({t0}, {t1}); got [{values[0]}, {values[-1]}]"
        )
    return values


def _progress(total: float, enabled: bool, label: str):
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        disable=not enabled,
        desc=f"integrate {label}",
        leave=False,
        bar_format="{l_bar}{bar}| t={n:.4g}/{total:.4g}",
    )

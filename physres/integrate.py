"""Adaptive step-size driver for any stepper: step doubling with a PI controller.

The local error of a step of size ``h`` is estimated by Richardson extrapolation: one step of
``h`` and two of ``h/2`` differ by ``(2^p - 1)·err`` for a method of order ``p``. The accepted
state is the two-half-step result. Steps share one ``h`` across the batch (the worst sample
controls it). Rejections come from the error test, from non-finite trial states and from
implicit solves that do not converge, so implicit steppers get through stiff transients.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch

from . import _checks
from .errors import ConvergenceError, StepSizeError


@dataclass
class Solution:
    """Result of :func:`integrate`.

    t : Tensor (n_t,) float64 — output times.
    x : Tensor (batch, n_t, *state_shape) — states at ``t``.
    stats : dict — ``n_accepted``, ``n_rejected``, ``nfev``, ``n_stepper_calls``, ``wall_s``.
    """

    t: torch.Tensor
    x: torch.Tensor
    stats: dict = field(default_factory=dict)


def integrate(stepper, x0: torch.Tensor, t_span, rtol: float = 1e-6, atol: float = 1e-9,
              t_eval=None, *, first_step: float | None = None, max_steps: int = 100_000,
              safety: float = 0.9, progress: bool = False) -> Solution:
    """Integrate from ``t_span[0]`` to ``t_span[1]`` with adaptive steps of ``stepper``.

    Parameters
    ----------
    stepper : Stepper with an ``order`` attribute.
    x0 : Tensor, shape (batch, *state_shape)
    t_span : (t0, t1) with t1 > t0
    rtol, atol : the local error per step is kept below ``atol + rtol·|x|`` (RMS norm).
    t_eval : increasing times in ``[t0, t1]`` to report; steps land on them exactly.
        Default: every accepted step.
    first_step : initial step size; default from the field's scale (Hairer's heuristic).
    max_steps : accepted plus rejected steps before :class:`~physres.errors.StepSizeError`.
    """
    t0, t1 = _span(t_span)
    rtol = _checks.positive("rtol", rtol)
    atol = _checks.positive("atol", atol, allow_zero=True)
    max_steps = _checks.positive_int("max_steps", max_steps)
    order = getattr(stepper, "order", None)
    if not isinstance(order, int) or order < 1:
        raise TypeError("`stepper` must have an integer `order` >= 1 (a physres Stepper)")
    stepper.check_call(x0, t1 - t0)
    outputs = _outputs(t_eval, t0, t1)
    step = stepper._step
    span = t1 - t0

    def norm(err, x_old, x_new):  # per-sample RMS of err / scale, max over the batch
        scale = atol + rtol * torch.maximum(x_old.abs(), x_new.abs())
        return float((err.abs() / scale).pow(2).flatten(1).mean(1).sqrt().max())

    h = first_step if first_step is not None else _initial_step(stepper, x0, t0, span, order,
                                                                 rtol, atol)
    h = min(_checks.positive("first_step", h), span)
    min_h = 16 * math.ulp(max(abs(t0), abs(t1), span))
    k_i, k_p = 0.7 / (order + 1), 0.4 / (order + 1)
    t, x = t0, x0
    if outputs is None:
        ts, xs, next_out = [t0], [x0], 0
    elif outputs[0] == t0:
        ts, xs, next_out = [t0], [x0], 1
    else:
        ts, xs, next_out = [], [], 0
    bar = _progress(span, progress, getattr(stepper, "name", ""))
    start = time.perf_counter()
    restore = _loosen_newton(stepper, 1e-3 * rtol)
    n_acc = n_rej = n_calls = 0
    prev_err = 1.0
    try:
        while t < t1:
            target = t1 if outputs is None or next_out >= len(outputs) else outputs[next_out]
            h_try = min(h, target - t)
            if n_acc + n_rej >= max_steps:
                raise StepSizeError(f"integrate reached `max_steps` = {max_steps} at t = {t:.6g} "
                                    f"(of {t1:g}); raise `max_steps`, loosen rtol/atol, or use an "
                                    "implicit stepper if the problem is stiff")
            if h_try < min_h:
                raise StepSizeError(
                    f"step size fell to {h_try:.3e} at t = {t:.6g}, below the resolution of t; "
                    "the problem may be stiff: use an implicit stepper ('backward_euler', "
                    "'crank_nicolson') or loosen rtol/atol")
            try:
                full = step(x, t, h_try)
                half = step(x, t, h_try / 2)
                fine = step(half, t + h_try / 2, h_try / 2)
                n_calls += 3
                err = norm((fine - full) / (2**order - 1), x, fine)
            except ConvergenceError:
                err = math.inf
            if not math.isfinite(err):
                n_rej += 1
                h = h_try * 0.25
                continue
            if err <= 1.0:
                t = t + h_try if h_try < target - t else target
                x = fine
                n_acc += 1
                bar.update(h_try)
                if outputs is None or (next_out < len(outputs) and t == outputs[next_out]):
                    ts.append(t)
                    xs.append(x)
                    next_out += outputs is not None
                factor = safety * max(err, 1e-10) ** -k_i * max(prev_err, 1e-10) ** k_p
                h = h_try * min(5.0, max(0.2, factor))
                prev_err = max(err, 1e-4)
            else:
                n_rej += 1
                h = h_try * max(0.2, safety * err ** -(1.0 / (order + 1)))
    finally:
        restore()
        bar.close()
    stats = {"n_accepted": n_acc, "n_rejected": n_rej, "n_stepper_calls": n_calls,
             "nfev": getattr(stepper, "nfev", None), "wall_s": time.perf_counter() - start}
    return Solution(t=torch.tensor(ts, dtype=torch.float64), x=torch.stack(xs, dim=1),
                    stats=stats)


def _loosen_newton(stepper, tol: float):
    """Solve implicit stages to ``tol`` (scipy's Radau ties its Newton tolerance to ``rtol``
    likewise) unless the user set the stepper's own ``tol``; returns a function that restores."""
    options = getattr(stepper, "newton", None)
    if options is None or options.tol is not None:
        return lambda: None
    import dataclasses

    stepper.newton = dataclasses.replace(options, tol=max(tol, 1e-13))

    def restore():
        stepper.newton = options

    return restore


def _span(t_span):
    try:
        t0, t1 = (float(v) for v in t_span)
    except (TypeError, ValueError):
        raise TypeError(f"`t_span` must be a pair (t0, t1) of numbers, got {t_span!r}") from None
    if not (math.isfinite(t0) and math.isfinite(t1) and t1 > t0):
        raise ValueError(f"`t_span` must satisfy t1 > t0 (finite), got ({t0}, {t1})")
    return t0, t1


def _outputs(t_eval, t0, t1):
    if t_eval is None:
        return None
    values = [float(v) for v in torch.as_tensor(t_eval, dtype=torch.float64).reshape(-1)]
    if not values:
        raise ValueError("`t_eval` must not be empty")
    if any(b <= a for a, b in zip(values, values[1:], strict=False)):
        raise ValueError("`t_eval` must be strictly increasing")
    if values[0] < t0 or values[-1] > t1:
        raise ValueError(f"`t_eval` must lie within t_span = ({t0}, {t1}); "
                         f"got [{values[0]}, {values[-1]}]")
    return values


def _initial_step(stepper, x0, t0, span, order, rtol, atol):
    """Hairer, Nørsett & Wanner, Solving ODEs I, §II.4: from the field's scale at t0."""
    field = getattr(stepper, "field", None)
    if field is None:
        return 1e-3 * span
    with torch.no_grad():
        scale = atol + rtol * x0.abs()

        def rms(v):
            return float((v.abs() / scale).pow(2).mean().sqrt())

        f0 = field(t0, x0)
        d0, d1 = rms(x0), rms(f0)
        h0 = 1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1
        h0 = min(h0, span)
        d2 = rms(field(t0 + h0, x0 + h0 * f0) - f0) / h0
        if max(d1, d2) <= 1e-15:
            h1 = max(1e-6, h0 * 1e-3)
        else:
            h1 = (0.01 / max(d1, d2)) ** (1.0 / (order + 1))
    return min(100 * h0, h1, span)


def _progress(total: float, enabled: bool, label: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not enabled, desc=f"integrate {label}", leave=False,
                bar_format="{l_bar}{bar}| t={n:.4g}/{total:.4g}")

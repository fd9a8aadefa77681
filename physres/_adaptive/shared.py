"""The shared-step loop: one step size for the whole batch, set by its worst sample.

Rejections come from the error test, from non-finite trial states and from implicit solves
that do not converge (:class:`~physres.errors.ConvergenceError`), so implicit steppers get
through stiff transients.
"""

from __future__ import annotations

import math

import torch

from ..errors import ConvergenceError, Status
from .control import Controller, Trial, error_ratio, failure


def run(
    trial: Trial,
    ctrl: Controller,
    x0,
    f0,
    t0: float,
    t1: float,
    direction: float,
    outputs,
    h: float,
    *,
    rtol,
    atol,
    max_steps,
    throw,
    bar,
    stepper,
):
    """Integrate; returns ``(ts, xs, status, n_accepted, n_rejected)`` with ``ts`` a list of
    floats and ``xs`` a list of (batch, *state_shape) states (NaN where the solve failed)."""
    t, x, f_cur = t0, x0, f0
    batch = x0.shape[0]
    if outputs is None:
        ts, xs, next_out = [t0], [x0], 0
    elif outputs[0] == t0:
        ts, xs, next_out = [t0], [x0], 1
    else:
        ts, xs, next_out = [], [], 0
    n_acc = n_rej = 0
    prev = torch.ones(1, dtype=torch.float64)
    after_reject = torch.zeros(1, dtype=torch.bool)
    last_failure = Status.STEP_FLOOR
    status = Status.SUCCESS
    while (t1 - t) * direction > 0:
        target = t1 if outputs is None or next_out >= len(outputs) else outputs[next_out]
        remaining = abs(target - t)
        landing = h >= remaining
        h_try = remaining if landing else h
        if n_acc + n_rej >= max_steps:
            status = Status.MAX_STEPS
        elif not landing and h_try < 10 * abs(math.nextafter(t, direction * math.inf) - t):
            status = last_failure
        if status != Status.SUCCESS:
            if throw:
                raise failure(status, t=t, h=h_try, t1=t1, stepper=stepper, max_steps=max_steps)
            break
        try:
            x_new, err, f_new = trial(x, t, direction * h_try, f_cur)
            ratio = error_ratio(err, x, x_new, rtol, atol).max().reshape(1)
            if not bool(torch.isfinite(ratio).all()):
                last_failure = Status.NON_FINITE
                ratio = torch.full_like(ratio, math.inf)
        except ConvergenceError:
            last_failure = Status.NEWTON_FAILURE
            ratio = torch.full((1,), math.inf, dtype=torch.float64)
        accept = ratio <= 1.0
        h = h_try * float(ctrl.factors(ratio, prev, accept, after_reject))
        after_reject = ~accept
        if not bool(accept):
            n_rej += 1
            continue
        last_failure = Status.STEP_FLOOR
        t = target if landing else t + direction * h_try
        x, f_cur = x_new, f_new
        n_acc += 1
        prev = ratio.clamp(min=1e-4)
        bar.update(h_try)
        if outputs is None or (landing and next_out < len(outputs) and t == outputs[next_out]):
            ts.append(t)
            xs.append(x)
            next_out += outputs is not None
    if status != Status.SUCCESS and outputs is not None:  # unreached outputs: NaN
        nan = torch.full_like(x0, math.nan)
        for tk in outputs[next_out:]:
            ts.append(tk)
            xs.append(nan)
    return ts, xs, torch.full((batch,), int(status), dtype=torch.long), n_acc, n_rej

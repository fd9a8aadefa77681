"""Error norms, step-size control and the first step, shared by both adaptive loops.

Every function works per sample: ratios and step sizes are float64 tensors of shape (batch,).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

RUNNING = -1  # status of a sample still being integrated (the public codes are >= 0)


def error_ratio(
    err: torch.Tensor, x_old: torch.Tensor, x_new: torch.Tensor, rtol: float, atol: float
) -> torch.Tensor:
    """Per-sample ``‖err / (atol + rtol·max(|x_old|, |x_new|))‖_RMS``, shape (batch,).

    A component whose error and scale are both zero (``atol = 0`` on a zero component)
    contributes zero rather than 0/0. Step-size control is not differentiated (as in diffrax
    and torchode): gradients flow through the accepted steps, not through the choice of h.
    """
    err, x_old, x_new = err.detach(), x_old.detach(), x_new.detach()
    scale = torch.maximum(x_old.abs(), x_new.abs()).mul_(rtol).add_(atol)
    q = err.abs().div_(scale) if not err.is_complex() else err.abs() / scale
    if atol == 0:
        q = torch.where(err == 0, torch.zeros_like(q), q)
    q = q.flatten(1)
    norm = torch.linalg.vector_norm(q, dim=1).mul_(q.shape[1] ** -0.5)
    return norm.to(torch.float64)


@dataclass(frozen=True)
class Controller:
    """PI step-size controller (Gustafsson 1991; Hairer & Wanner, Solving ODEs II, §IV.2):
    ``h_new = h·safety·r^(-ki/(q+1))·r_prev^(kp/(q+1))`` on acceptance, with ``r`` the error
    ratio; ``ki = 1, kp = 0`` is the integral controller of scipy's RK45 and diffrax's default.

    ``q`` is the order of the error estimate's leading term minus one, so that the local error
    scales as ``h^(q+1)``: ``min(order, error_order)`` for embedded pairs, ``order`` for step
    doubling. After a rejection the next accepted step may not grow (as scipy).
    """

    q: int
    safety: float = 0.9
    ki: float = 1.0
    kp: float = 0.0
    min_factor: float = 0.2
    max_factor: float = 10.0

    def factors(
        self,
        ratio: torch.Tensor,
        prev: torch.Tensor,
        accept: torch.Tensor,
        after_reject: torch.Tensor,
    ) -> torch.Tensor:
        """Multipliers of ``h`` (batch,): PI on acceptance, I on rejection, ``min_factor`` when
        the trial was non-finite or an implicit solve failed (``ratio = inf``)."""
        k = 1.0 / (self.q + 1)
        r = ratio.clamp(min=1e-10)
        if self.ki == 1.0 and not self.kp:  # integral control: one power serves both cases
            base = r.pow(-k).mul_(self.safety)
            grow = torch.minimum(base, torch.where(after_reject, 1.0, self.max_factor))
            grow = grow.clamp_(min=self.min_factor)
            shrink = base.clamp(self.min_factor, 1.0)
            return torch.where(accept, grow, shrink)
        grow = self.safety * r.pow(-self.ki * k)
        if self.kp:
            grow = grow * prev.pow(self.kp * k)
        grow = grow.clamp(self.min_factor, self.max_factor)
        grow = torch.where(after_reject, grow.clamp(max=1.0), grow)
        shrink = (self.safety * r.pow(-k)).clamp(min=self.min_factor, max=1.0)
        shrink = torch.where(torch.isfinite(ratio), shrink, torch.full_like(shrink, 0.25))
        return torch.where(accept, grow, shrink)


def initial_step(
    f,
    x0: torch.Tensor,
    f0: torch.Tensor,
    t0,
    direction: float,
    span: float,
    q: int,
    rtol: float,
    atol: float,
) -> torch.Tensor:
    """Hairer, Nørsett & Wanner, Solving ODEs I, §II.4 (scipy's ``select_initial_step``), per
    sample, shape (batch,). ``f(t, x)`` costs one more evaluation. Components whose scale is
    zero (``atol = 0`` on a zero component) are left out of the norms, and a degenerate
    estimate falls back to 1e-6 of the span instead of failing.
    """
    with torch.no_grad():
        scale = atol + rtol * x0.abs()
        live = scale > 0

        def rms(v):
            q_ = torch.where(live, v.abs() / torch.where(live, scale, 1.0), 0.0)
            n = live.flatten(1).sum(1).clamp(min=1)
            return (q_.square().flatten(1).sum(1) / n).sqrt().to(torch.float64)

        d0, d1 = rms(x0), rms(f0)
        small = (d0 < 1e-5) | (d1 < 1e-5) | ~torch.isfinite(d0 / d1)
        h0 = torch.where(small, torch.full_like(d0, 1e-6), 0.01 * d0 / d1).clamp(max=span)
        if isinstance(t0, torch.Tensor):  # per-sample times
            t_probe = t0 + direction * h0
        else:  # one shared probe time: the smallest h0
            h0 = torch.full_like(h0, float(h0.min()))
            t_probe = t0 + direction * float(h0[0])
        hb = h0.reshape(-1, *[1] * (x0.dim() - 1)).to(x0.real.dtype)
        d2 = rms(f(t_probe, x0 + direction * hb * f0) - f0) / h0
        dmax = torch.maximum(d1, d2)
        h1 = (0.01 / dmax).pow(1.0 / (q + 1))
        fallback = torch.maximum(torch.full_like(h0, 1e-6), h0 * 1e-3)
        h1 = torch.where(torch.isfinite(h1) & (dmax > 1e-15), h1, fallback)
        h = torch.minimum(100 * h0, h1).clamp(max=span)
        return torch.where(torch.isfinite(h) & (h > 0), h, torch.full_like(h, 1e-6 * span))


class Trial:
    """One attempted step and its local error estimate: ``(x, t, dt, f0) -> (x_new, err,
    f_new)``. Embedded pairs give the estimate directly (FSAL pairs also return ``f_new =
    f(t + dt, x_new)`` and take the accepted step's as ``f0``); other steppers use step
    doubling: ``(two steps of dt/2 − one of dt) / (2^p − 1)``, keeping the two half steps."""

    def __init__(self, stepper):
        self.embedded = isinstance(getattr(stepper, "error_order", None), int) and hasattr(
            stepper, "_step_with_error"
        )
        self.fsal = self.embedded and bool(getattr(stepper, "fsal", False))
        self.stepper = stepper
        order = stepper.order
        self.q = min(order, stepper.error_order) if self.embedded else order
        self._denominator = 2**order - 1

    def __call__(self, x, t, dt, f0):
        s = self.stepper
        if self.fsal:
            return s._step_fsal(x, t, dt, f0)
        if self.embedded:
            x_new, err = s._step_with_error(x, t, dt)
            return x_new, err, None
        full = s.step(x, t, dt)
        half = s.step(x, t, dt / 2)
        fine = s.step(half, t + dt / 2, dt / 2)
        return fine, (fine - full) / self._denominator, None


def failure(
    status: int,
    *,
    t: float,
    h: float,
    t1: float,
    stepper,
    max_steps: int,
    sample: int | None = None,
) -> Exception:
    """The exception for a failed solve: it names where, why, and what to do."""
    from ..errors import DivergenceError, Status, StepSizeError

    where = f"sample {sample}: " if sample is not None else ""
    explicit = bool(getattr(stepper, "explicit", False))
    stiff_hint = (
        "use an L-stable implicit stepper ('kvaerno5') if the problem is stiff"
        if explicit
        else "check the field for a singularity near this t (finite-time blow-up), give "
        "its owner an analytic `jacobian(t, x)`"
    )
    if status == Status.MAX_STEPS:
        msg = (
            f"{where}integrate reached `max_steps` = {max_steps} at t = {t:.6g} (of {t1:g}); "
            f"raise `max_steps`, loosen rtol/atol, or {stiff_hint}"
        )
        error = StepSizeError(msg)
    elif status == Status.NON_FINITE:
        msg = (
            f"{where}trial states stayed non-finite (nan/inf) down to step size {h:.3e} at "
            f"t = {t:.6g}: the field is undefined or singular there; check its domain, or "
            "end `t_span` before this t"
        )
        error = DivergenceError(msg, step=0, time=t)
    elif status == Status.NEWTON_FAILURE:
        msg = (
            f"{where}implicit stages did not converge down to step size {h:.3e} at "
            f"t = {t:.6g}; give the field's owner an analytic `jacobian(t, x)`, raise the "
            "stepper's `max_iter`, or loosen rtol/atol"
        )
        error = StepSizeError(msg)
    else:
        tight = (
            "loosen rtol/atol, or " + stiff_hint
            if explicit
            else "loosen rtol/atol (float64 cannot resolve them at this t), or " + stiff_hint
        )
        msg = f"{where}step size fell to {h:.3e} at t = {t:.6g}, below the resolution of t; {tight}"
        error = StepSizeError(msg)
    error.status = Status(status)
    return error

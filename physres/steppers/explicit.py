"""Explicit Runge–Kutta steppers. ``euler`` is the residual block ``x + dt·f(t, x)`` itself."""

from __future__ import annotations

from typing import ClassVar

import torch

from . import tableau as tb
from .base import Stepper, register


def axpy(y: torch.Tensor, a, x: torch.Tensor) -> torch.Tensor:
    """``y + a * x`` in one kernel when ``a`` is a Python number."""
    if isinstance(a, (int, float)):
        return torch.add(y, x, alpha=a)
    return y + a * x


def _combine(x: torch.Tensor, dt, weights, k) -> torch.Tensor:
    """``x + dt·Σ_j w_j k_j``; ``dt`` a float, or a tensor broadcast against ``x``."""
    if not weights:
        return x
    if isinstance(dt, (int, float)):
        for j, w in weights:
            x = torch.add(x, k[j], alpha=w * dt)
        return x
    (j0, w0), *rest = weights
    s = k[j0] * w0
    for j, w in rest:
        s = torch.add(s, k[j], alpha=w)
    return torch.addcmul(x, dt, s)


def _weighted(dt, weights, k) -> torch.Tensor:
    """``dt·Σ_j w_j k_j`` (the embedded error estimate)."""
    (j0, w0), *rest = weights
    s = k[j0] * w0
    for j, w in rest:
        s = torch.add(s, k[j], alpha=w)
    return s * dt


class ExplicitRungeKutta(Stepper):
    """Explicit Runge–Kutta step from a :class:`~physres.steppers.tableau.ButcherTableau`.

    Subclasses set ``tableau`` only; ``order`` follows from it, and a tableau with an embedded
    pair (``b_hat``) gives ``error_order`` and ``_step_with_error`` (and ``_step_fsal`` when
    the method is FSAL). Steps take per-sample ``t``, ``dt`` of shape ``(batch,)``.
    """

    tableau: ClassVar[tb.ButcherTableau]
    explicit = True
    per_sample = True

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.order = cls.tableau.order
        cls._coefficients = cls.tableau.floats()  # built once, not per step
        # a plain step needs the stages up to the last nonzero weight (FSAL's last is unused)
        cls._n_solution_stages = max(j for j, _ in cls._coefficients[2]) + 1
        if cls.tableau.b_hat is not None:
            cls.error_order = cls.tableau.error_order
            cls.fsal = cls.tableau.fsal
            cls._error_weights = cls.tableau.error_floats()

    @staticmethod
    def _broadcast(x, dt):
        if isinstance(dt, torch.Tensor) and dt.dim() == 1:
            return dt.reshape(-1, *[1] * (x.dim() - 1)).to(x.real.dtype)
        return dt

    def _stages(self, x, t, dt, n, k):
        """Fill ``k`` (which may hold ``f(t, x)`` already) up to ``n`` stages."""
        c, a, _ = self._coefficients
        dtb = self._broadcast(x, dt)
        for i in range(len(k), n):
            xi = _combine(x, dtb, a[i], k)
            k.append(self.f(t + c[i] * dt if c[i] else t, xi))
        return dtb

    def _step(self, x, t, dt):
        k = []
        dtb = self._stages(x, t, dt, self._n_solution_stages, k)
        return _combine(x, dtb, self._coefficients[2], k)

    def _step_with_error(self, x, t, dt):
        out = self._step_fsal(x, t, dt, None)
        return out[0], out[1]

    def _step_fsal(self, x, t, dt, f0):
        """One step with its error estimate; ``f0`` is ``f(t, x)`` when known (FSAL)."""
        k = [] if f0 is None else [f0]
        s = self.tableau.stages
        if self.fsal:  # the last stage is evaluated at the solution itself
            dtb = self._stages(x, t, dt, s - 1, k)
            x_next = _combine(x, dtb, self._coefficients[2], k)
            k.append(self.f(t + dt, x_next))
        else:
            dtb = self._stages(x, t, dt, s, k)
            x_next = _combine(x, dtb, self._coefficients[2], k)
        return x_next, _weighted(dtb, self._error_weights, k), (k[-1] if self.fsal else None)


@register("euler")
class Euler(ExplicitRungeKutta):
    """Forward Euler, ``x + dt·f(t, x)``: the residual block. Order 1."""

    tableau = tb.EULER


@register("heun")
class Heun(ExplicitRungeKutta):
    """Heun's method (explicit trapezoidal rule). Order 2."""

    tableau = tb.HEUN


@register("midpoint")
class Midpoint(ExplicitRungeKutta):
    """Explicit midpoint rule. Order 2."""

    tableau = tb.MIDPOINT


@register("rk4")
class RK4(ExplicitRungeKutta):
    """The classical fourth-order Runge–Kutta method (Kutta 1901)."""

    tableau = tb.RK4


@register("bosh3")
class Bosh3(ExplicitRungeKutta):
    """Bogacki–Shampine 3(2) pair (Bogacki & Shampine 1989): order 3 with an embedded order-2
    error estimate, FSAL (3 evaluations per accepted step). scipy's ``RK23``."""

    tableau = tb.BOSH3


@register("dopri5")
class Dopri5(ExplicitRungeKutta):
    """Dormand–Prince 5(4) pair (Dormand & Prince 1980): order 5 with an embedded order-4
    error estimate, FSAL (6 evaluations per accepted step). scipy's ``RK45``."""

    tableau = tb.DOPRI5


@register("tsit5")
class Tsit5(ExplicitRungeKutta):
    """Tsitouras 5(4) pair (Tsitouras 2011): order 5 with an embedded order-4 error
    estimate, FSAL, smaller error constants than Dormand–Prince."""

    tableau = tb.TSIT5

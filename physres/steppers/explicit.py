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


class ExplicitRungeKutta(Stepper):
    """Explicit Runge–Kutta step from a :class:`~physres.steppers.tableau.ButcherTableau`.

    Subclasses set ``tableau`` only; ``order`` follows from it.
    """

    tableau: ClassVar[tb.ButcherTableau]
    explicit = True

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.order = cls.tableau.order
        cls._coefficients = cls.tableau.floats()  # built once, not per step

    def _step(self, x, t, dt):
        c, a, b = self._coefficients
        k = []
        for ci, row in zip(c, a, strict=True):
            xi = x
            for j, aij in row:
                xi = axpy(xi, aij * dt, k[j])
            k.append(self.f(t + ci * dt if ci else t, xi))
        out = x
        for j, bj in b:
            out = axpy(out, bj * dt, k[j])
        return out


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

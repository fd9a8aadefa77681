"""Residual time-steppers: ``x_{n+1} = x_n + increment`` for any field ``f(t, x)``.

>>> import physres
>>> step = physres.steppers.get("rk4", lambda t, x: -x)
>>> physres.steppers.names(general=True)[:3]
['backward_euler', 'crank_nicolson', 'euler']
"""

from . import (  # noqa: F401  (registers the steppers)
    esdirk,  # kvaerno3, kvaerno5
    explicit,
    exponential,
    implicit,
    langevin,  # noqa: F401  (registers euler_maruyama, baoab)
    quantum,  # noqa: F401  (split_operator, exponential_midpoint, etrs, crank_nicolson_pc)
    symplectic,
)
from .banded import BandedOperator
from .base import EXACT_ORDER, REGISTRY, Stepper, field_owner, get, names, register
from .explicit import ExplicitRungeKutta
from .implicit import ImplicitStepper
from .linear import DenseOperator, DiagonalOperator, LinearOperator
from .newton import NewtonOptions
from .stability import stability_function
from .tableau import ButcherTableau

__all__ = [
    "EXACT_ORDER",
    "REGISTRY",
    "BandedOperator",
    "ButcherTableau",
    "DenseOperator",
    "DiagonalOperator",
    "ExplicitRungeKutta",
    "ImplicitStepper",
    "LinearOperator",
    "NewtonOptions",
    "Stepper",
    "field_owner",
    "get",
    "names",
    "register",
    "stability_function",
]

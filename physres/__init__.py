"""physres: residual blocks as time-steppers for physical simulation.

A residual block ``x + h·F(x)`` is a forward-Euler step. physres makes that literal: one
stepper interface advances known physics and learned physics alike.
"""

from . import data, models, reference, steppers, systems, training, validation
from ._version import __version__
from .artifacts import load, save
from .errors import ConvergenceError, DivergenceError, FormatError, Status, StepSizeError
from .integrate import Solution, integrate
from .rollout import rollout

__all__ = [
    "ConvergenceError",
    "DivergenceError",
    "FormatError",
    "Solution",
    "StepSizeError",
    "Status",
    "__version__",
    "data",
    "integrate",
    "load",
    "models",
    "reference",
    "rollout",
    "save",
    "steppers",
    "systems",
    "training",
    "validation",
]

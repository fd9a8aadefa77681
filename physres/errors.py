"""Exceptions raised by physres. Each names what went wrong, where, and what to do."""

from __future__ import annotations


class PhysresError(Exception):
    """Base class of physres's own errors."""


class DivergenceError(PhysresError, FloatingPointError):
    """A rollout produced a non-finite state.

    Attributes
    ----------
    step : int
        Index of the step that produced the first non-finite value (1-based).
    time : float
        Time reached by that step.
    trajectory : Tensor or None
        The saved part of the trajectory up to the last finite state.
    """

    def __init__(self, message: str, step: int, time: float, trajectory=None):
        super().__init__(message)
        self.step = step
        self.time = time
        self.trajectory = trajectory


class ConvergenceError(PhysresError, RuntimeError):
    """An implicit solve (Newton or Krylov) did not converge."""

    def __init__(self, message: str, residual: float, iterations: int):
        super().__init__(message)
        self.residual = residual
        self.iterations = iterations


class StepSizeError(PhysresError, RuntimeError):
    """The adaptive driver could not continue (step size underflow or too many steps)."""


class FormatError(PhysresError, ValueError):
    """A file is not what physres expects (wrong format tag, version, shape or dtype)."""

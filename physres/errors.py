"""Every exception and warning class of physres, in one place.

Each error names what went wrong, where, and what to do; structured attributes (``step``,
``time``, ``residual``, ``iterations``, ``index``) carry the same facts for code. The classes
are re-exported where they are raised (``physres.reference.ReferenceSolveError``,
``physres._compile.CompileFallbackWarning``), so either import works.

==========================  ===========================================================
``PhysresError``            base class of physres's own errors
``DivergenceError``         a rollout produced a non-finite state (``step``, ``time``)
``ConvergenceError``        an implicit solve did not converge (``residual``, ``iterations``)
``StepSizeError``           the adaptive driver could not continue
``FormatError``             a file is not what physres expects
``ReferenceSolveError``     scipy failed on one trajectory of a batch (``index``)
``CompileFallbackWarning``  ``compile=True`` fell back to eager steps
``Status``                  outcome codes of :func:`physres.integrate` (not an exception)
==========================  ===========================================================
"""

from __future__ import annotations

import enum


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


class ReferenceSolveError(PhysresError, RuntimeError):
    """scipy failed on one trajectory; ``index`` is that trajectory's position in the batch."""

    def __init__(self, message: str, index: int):
        super().__init__(message)
        self.index = index

    def __reduce__(self):  # survives the trip back from a worker process
        return type(self), (str(self), self.index)


class CompileFallbackWarning(RuntimeWarning):
    """``compile=True`` was asked for but the run fell back to eager steps."""


class Status(enum.IntEnum):
    """Outcome of :func:`physres.integrate` for one sample (``sol.status``, shape (batch,)).

    SUCCESS: reached the end of ``t_span``. MAX_STEPS: ``max_steps`` accepted plus rejected
    steps were spent. STEP_FLOOR: the step size fell below the resolution of ``t`` (a
    singularity, stiffness for an explicit stepper, or a tolerance float64 cannot meet).
    NEWTON_FAILURE: implicit stages kept failing to converge down to that floor.
    NON_FINITE: trial states kept being non-finite (nan/inf) down to that floor.
    """

    SUCCESS = 0
    MAX_STEPS = 1
    STEP_FLOOR = 2
    NEWTON_FAILURE = 3
    NON_FINITE = 4

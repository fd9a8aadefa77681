"""The exact step of a linear time-independent field: ``x_{n+1} = exp(dt·A) x_n``."""

from __future__ import annotations

from .base import EXACT_ORDER, Stepper, register


@register("exponential")
class Exponential(Stepper):
    """Exact exponential step for ``f(t, x) = A x`` with constant ``A``.

    Needs a field whose owner declares ``linear_operator(t)`` (every physres linear system
    does). Error-free up to round-off, so it is the yardstick for the other steppers.
    """

    order = EXACT_ORDER
    explicit = True
    general = False

    def _step(self, x, t, dt):
        operator = getattr(self.structure, "linear_operator", None)
        op = operator(t) if callable(operator) else None
        if op is None:
            raise TypeError(
                "`exponential` needs a linear field: the field's owner must define "
                "linear_operator(t) (physres linear systems do); use 'rk4' or an implicit stepper "
                "for other fields"
            )
        if getattr(op, "time_dependent", False):
            raise ValueError(
                "`exponential` is exact only for time-independent operators; this one depends on t"
            )
        return op.expm_apply(dt, x)

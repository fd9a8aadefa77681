"""Implicit one-step methods, all reduced to one stage equation ``z = b + a·f(τ, z)``.

=================  ===  ==========  =====================  ============
method             a    τ           b                      x_{n+1}
=================  ===  ==========  =====================  ============
backward_euler     dt   t + dt      x                      z
implicit_midpoint  dt/2 t + dt/2    x                      2z - x
crank_nicolson     dt/2 t + dt      x + dt/2·f(t, x)       z
=================  ===  ==========  =====================  ============

Only ``backward_euler`` is L-stable. ``implicit_midpoint`` and ``crank_nicolson`` have
``R(−∞) = −1``: a stiff mode is not damped but flips sign every step (the reason they conserve
norms), so on stiff dissipative problems (kinetics, relaxation oscillations) they ring.
For those, use ``kvaerno5`` (L-stable, order 5, embedded error estimate,
:mod:`physres.steppers.esdirk`) under :func:`physres.integrate`.

A field whose owner declares ``linear_operator(t)`` gets one direct solve of ``(I - a A) z = b``
(for ``H ψ`` this is the Cayley form of Crank–Nicolson). Otherwise batched Newton
(:mod:`physres.steppers.newton`) solves the stage, using ``jacobian(t, x)`` when the owner
provides one.
"""

from __future__ import annotations

from .base import Stepper, register
from .explicit import axpy
from .newton import NewtonOptions, solve_stage


class ImplicitStepper(Stepper):
    """Base of the one-stage implicit methods.

    Subclass contract: implement ``_stage(x, t, dt) -> (a, tau, b)`` and
    ``_finish(x, z) -> x_next``; the base class solves the stage equation.
    """

    explicit = False

    def __init__(
        self,
        field=None,
        *,
        state_shape=None,
        tol: float | None = None,
        max_iter: int = 30,
        krylov_above: int = 128,
    ):
        super().__init__(field, state_shape=state_shape)
        self.newton = NewtonOptions(tol=tol, max_iter=max_iter, krylov_above=krylov_above)

    def _step(self, x, t, dt):
        a, tau, b = self._stage(x, t, dt)
        operator = getattr(self.structure, "linear_operator", None)
        op = operator(tau) if callable(operator) else None
        if op is not None:
            z = op.solve_shifted(a, b).to(b.dtype)  # keep the input dtype (float32 stays)
        else:
            jacobian = getattr(self.structure, "jacobian", None)
            z = solve_stage(
                self.field,
                tau,
                a,
                b,
                jacobian=jacobian,
                options=self.newton,
                method=self.name,
                counts=self.counts,
            )
        return self._finish(x, z)

    def _finish(self, x, z):
        return z


@register("backward_euler")
class BackwardEuler(ImplicitStepper):
    """Backward (implicit) Euler: ``x_{n+1} = x_n + dt·f(t_{n+1}, x_{n+1})``. Order 1, L-stable."""

    order = 1

    def _stage(self, x, t, dt):
        return dt, t + dt, x


@register("implicit_midpoint")
class ImplicitMidpoint(ImplicitStepper):
    """Implicit midpoint: ``x_{n+1} = x_n + dt·f(t + dt/2, (x_n + x_{n+1})/2)``.

    Order 2, A-stable, symplectic, and it conserves every quadratic invariant (norm of ψ).
    Not L-stable (``R(−∞) = −1``): stiff decaying modes oscillate instead of decaying; use
    ``kvaerno5`` for stiff dissipative problems.
    """

    order = 2

    def _stage(self, x, t, dt):
        return dt / 2, t + dt / 2, x

    def _finish(self, x, z):
        return 2 * z - x


@register("crank_nicolson")
class CrankNicolson(ImplicitStepper):
    """Crank–Nicolson (trapezoidal rule): ``x_{n+1} = x_n + dt/2·(f(t, x_n) + f(t+dt, x_{n+1}))``.

    Order 2, A-stable; for ``ψ' = -iHψ/ħ`` it is the unitary Cayley step. Not L-stable
    (``R(−∞) = −1``): stiff decaying modes oscillate instead of decaying; use ``kvaerno5`` for
    stiff dissipative problems.
    """

    order = 2

    def _stage(self, x, t, dt):
        return dt / 2, t + dt, axpy(x, dt / 2, self.f(t, x))

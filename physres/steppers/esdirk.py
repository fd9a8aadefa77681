"""L-stable ESDIRK pairs with an embedded error estimate: ``kvaerno3`` and ``kvaerno5``.

An ESDIRK method (explicit first stage, singly diagonally implicit) solves its stages one
after another, each ``z_i = b_i + γh·f(t + c_i h, z_i)`` with
``b_i = x + h·Σ_{j<i} a_ij k_j``. The diagonal ``γ`` is the same for every stage, so one
factorisation of ``I − γh·J`` serves all stages and every Newton iteration of a step
(simplified Newton, as Radau and diffrax do); it is refreshed only when Newton contracts
slowly, and a stage simplified Newton cannot solve falls back to the full damped Newton of
:func:`~physres.steppers.newton.solve_stage`. Stage derivatives are taken as
``k_i = (z_i − b_i)/(γh)`` rather than ``f(z_i)``: on stiff components ``f`` would amplify
the Newton residual by ``‖J‖``.

Kværnø's pairs (Kværnø, *BIT* 44, 2004) are stiffly accurate (the solution is the last
stage), so ``R(−∞) = 0``: stiff modes are damped, not reflected as by Crank–Nicolson
(``R(−∞) = −1``). The embedded solution is the next-to-last stage (with ``γ`` on its
diagonal); the difference is the local error estimate of order ``error_order + 1``.
The stage predictors (initial Newton guesses from earlier stages) are diffrax's
(``diffrax/_solver/kvaerno{3,5}.py``).

``integrate(..., compile=True)`` uses another Newton (:meth:`ESDIRK._masked_step_with_error`):
masked tensor operations with a fixed iteration cap, no Jacobian refresh and no fallback, so
that the whole adaptive loop compiles; its steps differ from those of this eager path.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from ..errors import ConvergenceError
from .base import Stepper, register
from .newton import NewtonOptions, _needs_grad, simplified_newton, solve_stage


def _grow(tree):
    """Every rooted tree with one more vertex than ``tree`` (trees as sorted child tuples)."""
    yield tuple(sorted(tree + ((),)))
    for i, child in enumerate(tree):
        for grown in _grow(child):
            yield tuple(sorted(tree[:i] + (grown,) + tree[i + 1 :]))


def rooted_trees(order: int) -> list[tuple]:
    """The rooted trees with up to ``order`` vertices (1, 1, 2, 4, 9, 20, ... of each size)."""
    level, out = {()}, [()]
    for _ in range(order - 1):
        level = {g for t in level for g in _grow(t)}
        out.extend(sorted(level))
    return out


def _size(tree) -> int:
    return 1 + sum(_size(c) for c in tree)


def _density(tree) -> int:
    return _size(tree) * math.prod(_density(c) for c in tree)


def _weights(tree, A: np.ndarray) -> np.ndarray:
    """Elementary weights Φ(tree) per stage: ∏_children (A Φ(child))."""
    out = np.ones(A.shape[0])
    for child in tree:
        out = out * (A @ _weights(child, A))
    return out


def order_residuals(A, b, order: int) -> list[tuple[int, float]]:
    """(tree size, ``b·Φ(t) − 1/γ(t)``) for every rooted tree up to ``order`` (Butcher 1963;
    Hairer, Nørsett & Wanner, *Solving ODEs I*, §II.2)."""
    A, b = np.asarray(A, dtype=float), np.asarray(b, dtype=float)
    return [(_size(t), float(b @ _weights(t, A) - 1.0 / _density(t))) for t in rooted_trees(order)]


@dataclass(frozen=True)
class DirkTableau:
    """An ESDIRK pair, checked on construction.

    ``a`` is lower triangular, row by row (row ``i`` has ``i + 1`` entries, the diagonal
    last); row 0 is ``(0,)`` (explicit first stage) and every later diagonal is ``gamma``.
    ``b`` must equal the last row (stiffly accurate) and ``b_hat`` is the embedded solution.
    ``predictor`` row ``i − 1`` gives the Newton guess of stage ``i`` as weights of the earlier
    stage derivatives (each row sums to 1). Checks: ``sum(a_i) = c_i``, the order conditions
    of ``b`` up to ``order`` and of ``b_hat`` up to ``error_order`` (all rooted trees), to
    ``tol`` (the published coefficients are 17-digit decimals).
    """

    gamma: float
    c: tuple
    a: tuple
    b: tuple
    b_hat: tuple
    predictor: tuple
    order: int
    error_order: int
    tol: float = 1e-13

    def __post_init__(self):
        s = len(self.b)
        if len(self.c) != s or len(self.a) != s or len(self.b_hat) != s:
            raise ValueError(f"tableau: c, a, b, b_hat must have {s} stages")
        if tuple(self.a[0]) != (0,) or self.c[0] != 0:
            raise ValueError("tableau: the first stage must be explicit (a[0] = (0,), c[0] = 0)")
        for i, row in enumerate(self.a):
            if len(row) != i + 1:
                raise ValueError(f"tableau: row {i} of `a` must have {i + 1} entries")
            if i and row[-1] != self.gamma:
                raise ValueError(f"tableau: diagonal a[{i}][{i}] = {row[-1]} != gamma")
            if abs(sum(row) - self.c[i]) > self.tol:
                raise ValueError(f"tableau: sum(a[{i}]) = {sum(row)} != c[{i}] = {self.c[i]}")
        if tuple(self.b) != tuple(self.a[-1]):
            raise ValueError("tableau: `b` must equal the last row of `a` (stiffly accurate)")
        if len(self.predictor) != s - 1:
            raise ValueError(f"tableau: `predictor` must have {s - 1} rows")
        for i, row in enumerate(self.predictor, start=1):
            if len(row) != i or abs(sum(row) - 1) > self.tol:
                raise ValueError(
                    f"tableau: predictor row of stage {i} must have {i} weights summing to 1"
                )
        A = self.matrix()
        for weights, p, label in (
            (self.b, self.order, "b"),
            (self.b_hat, self.error_order, "b_hat"),
        ):
            for size, residual in order_residuals(A, weights, p):
                if abs(residual) > 10 * self.tol:
                    raise ValueError(
                        f"tableau: an order-{size} condition of `{label}` fails "
                        f"(residual {residual:.2e})"
                    )

    @property
    def stages(self) -> int:
        return len(self.b)

    def matrix(self) -> np.ndarray:
        A = np.zeros((self.stages, self.stages))
        for i, row in enumerate(self.a):
            A[i, : i + 1] = row
        return A


class ESDIRK(Stepper):
    """Embedded ESDIRK step from a :class:`DirkTableau`.

    Subclasses set ``tableau`` only; ``order`` and ``error_order`` follow from it.
    ``_step_with_error(x, t, dt) -> (x_next, err)`` gives the embedded local error estimate
    that :func:`physres.integrate` uses instead of step doubling. ``t`` and ``dt`` may be
    floats or tensors of shape (batch,) (one step size per sample: the batched LU factors
    ``I − γ·h_b·J_b`` per sample).

    Parameters
    ----------
    field : callable ``f(t, x)``; ``jacobian(t, x)`` or ``linear_operator(t)`` of its owner
        are used when present.
    tol, atol, max_iter, krylov_above : Newton settings (:class:`NewtonOptions`).
    """

    tableau: ClassVar[DirkTableau]
    explicit = False
    per_sample = True

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        tab = cls.tableau
        cls.order, cls.error_order = tab.order, tab.error_order
        # Built once, not per step: (c_i, [(j, a_ij)], [(j, α_ij)]) for the implicit stages.
        cls._stages = [
            (
                float(tab.c[i]),
                [(j, float(v)) for j, v in enumerate(tab.a[i][:-1]) if v],
                [(j, float(v)) for j, v in enumerate(tab.predictor[i - 1]) if v],
            )
            for i in range(1, tab.stages)
        ]
        cls._error_weights = [
            (j, float(b - bh))
            for j, (b, bh) in enumerate(zip(tab.b, tab.b_hat, strict=True))
            if b != bh
        ]

    def __init__(
        self,
        field=None,
        *,
        state_shape=None,
        tol: float | None = None,
        atol: float | None = None,
        max_iter: int = 10,
        krylov_above: int = 128,
    ):
        super().__init__(field, state_shape=state_shape)
        self.newton = NewtonOptions(
            tol=tol, atol=atol, max_iter=max_iter, krylov_above=krylov_above
        )
        self._full_max_iter = max(30, max_iter)
        self._fsal = None  # (x_next, t_next, f(t_next, x_next)) of the last step

    def _step(self, x, t, dt):
        return self._step_with_error(x, t, dt)[0]

    def _first_derivative(self, x, t):
        cached = self._fsal
        if (
            cached is not None
            and cached[0] is x
            and not isinstance(t, torch.Tensor)
            and cached[1] == t
        ):
            return cached[2]
        return self.f(t, x)

    @property
    def _full_newton(self) -> NewtonOptions:
        """Options of the fallback full Newton (line search, Jacobian refreshes): the current
        tolerances (``integrate`` may have set them), more iterations."""
        return dataclasses.replace(self.newton, max_iter=self._full_max_iter)

    def _exact_gradients(self, b) -> bool:
        """Whether a stage needs the full Newton with implicit-function gradients (autograd
        on and something to differentiate, a complex state, or a Krylov-sized one)."""
        return (
            b.is_complex()
            or b[0].numel() > self.newton.krylov_above
            or (torch.is_grad_enabled() and _needs_grad(b, self.field))
        )

    def _step_with_error(self, x, t, dt):
        """One step and its local error estimate, both of the shape of ``x``."""
        per_sample = isinstance(dt, torch.Tensor) and dt.ndim > 0
        if per_sample:
            dt = dt.to(x.real.dtype)  # a float32 state stays float32
            h = dt.reshape(-1, *[1] * (x.ndim - 1))
        else:
            h = dt
        gh = self.tableau.gamma * h
        gamma_dt = self.tableau.gamma * dt  # the stage coefficient a (float or (B,))
        operator = None if per_sample else getattr(self.structure, "linear_operator", None)
        jacobian = getattr(self.structure, "jacobian", None)
        lu: dict = {}  # one factorisation of I − γh·J for every stage of this step
        k = [self._first_derivative(x, t)]
        z = x
        for c, row, guess in self._stages:
            b = _combine(x, h, k, row, per_sample)
            tau = t + c * dt
            op = operator(tau) if callable(operator) else None
            if op is not None:
                z = op.solve_shifted(gamma_dt, b).to(b.dtype)
            else:
                z0 = _combine(b, gh, k, guess, per_sample)
                z = None
                if not self._exact_gradients(b):
                    try:
                        z = simplified_newton(
                            self.field,
                            tau,
                            gamma_dt,
                            b,
                            z0,
                            lu=lu,
                            jacobian=jacobian,
                            options=self.newton,
                            method=self.name,
                            counts=self.counts,
                            x_jac=x,
                        )
                    except ConvergenceError:
                        lu.clear()  # strongly nonlinear stage: full damped Newton below
                if z is None:
                    z = solve_stage(
                        self.field,
                        tau,
                        gamma_dt,
                        b,
                        jacobian=jacobian,
                        options=self._full_newton,
                        method=self.name,
                        counts=self.counts,
                        z0=z0,
                        lu=lu,
                    )
            k.append((z - b) / gh)
        err = _combine(None, h, k, self._error_weights, per_sample)
        if not per_sample and not (torch.is_grad_enabled() and z.requires_grad):
            self._fsal = (z, t + dt, k[-1])
        return z, err

    def masked_unsupported(self, x: torch.Tensor) -> str | None:
        """Why :meth:`_masked_step_with_error` cannot serve this state (None when it can)."""
        if x.is_complex():
            return "complex states run eagerly (the masked Newton is real)"
        if x[0].numel() > self.newton.krylov_above:
            return (
                f"states of more than krylov_above = {self.newton.krylov_above} unknowns "
                "use Newton–Krylov, which runs eagerly"
            )
        return None

    def masked_options(self, x: torch.Tensor) -> dict:
        """The masked Newton's settings as plain numbers (``tol``, ``atol``, ``max_iter``) from
        the current :class:`NewtonOptions`: fixed when a compiled loop is built, so the traced
        step reads no mutable stepper state."""
        opts = self.newton
        tol = opts.tol or (1e-14 if x.dtype == torch.float64 else 1e-6)
        return {
            "tol": float(tol),
            "atol": float(tol if opts.atol is None else opts.atol),
            "max_iter": int(opts.max_iter),
        }

    def _masked_step_with_error(self, x, t, dt, live, *, tol, atol, max_iter):
        """One step per sample as masked tensor operations (the compiled adaptive loop's).

        A different algorithm from :meth:`_step_with_error` (the eager path), so steps do not
        match it one for one: per sample, the Jacobian at the step's start ``(t, x)``
        (analytic, else forward-mode autodiff), ``I − γh·J`` factored once for every stage,
        and each stage a simplified Newton of at most ``max_iter`` iterations with no refresh
        and no fallback (:func:`~physres.steppers.newton.masked_newton`, as diffrax's
        ``VeryChord``). ``t`` and ``dt`` are float64 (B,); ``live`` (B,) marks the samples to
        solve; ``tol``, ``atol``, ``max_iter`` as :meth:`masked_options` gives them. Returns
        ``(x_next, err, ok, evaluations)``: ``ok`` (B,) False where a stage
        did not converge or ``I − γh·J`` is singular (the loop then rejects that sample's
        step and shrinks h), ``evaluations`` (B,) field evaluations per sample and a 0-d
        tensor of batched ones.
        """
        from .newton import masked_factor, masked_newton, traceable_jacobian

        B = x.shape[0]
        gamma = self.tableau.gamma
        dtr = dt.to(x.real.dtype)
        h = dtr.reshape(-1, *[1] * (x.ndim - 1))
        gh = gamma * h
        a = (gamma * dtr).reshape(B, 1)
        field = self.field
        jacobian = getattr(self.structure, "jacobian", None)
        k = [field(t, x)]
        J = traceable_jacobian(field, jacobian, t, x)
        m = J.shape[-1]
        eye = torch.eye(m, dtype=J.dtype, device=J.device)
        solve, ok = masked_factor(eye - a.unsqueeze(-1) * J)
        evals = torch.ones(B, dtype=torch.long, device=x.device)
        batched = torch.ones((), dtype=torch.long, device=x.device)
        z = x
        for c, row, guess in self._stages:
            b = _combine(x, h, k, row, True)
            tau = t + c * dt
            z0 = _combine(b, gh, k, guess, True)
            b_flat = b.reshape(B, m)

            def residual(zf, tau=tau, b_flat=b_flat):
                return zf - b_flat - a * field(tau, zf.reshape(x.shape)).reshape(B, m)

            zf, converged, n, iterations = masked_newton(
                residual,
                z0.reshape(B, m),
                solve,
                live & ok,
                tol=tol,
                atol=atol,
                max_iter=max_iter,
            )
            ok = ok & converged
            evals = evals + n
            batched = batched + iterations
            z = zf.reshape(x.shape)
            k.append((z - b) / gh)
        err = _combine(None, h, k, self._error_weights, True)
        return z, err, ok, evals, batched

    def extra_repr(self) -> str:
        return f"order={self.order}, error_order={self.error_order}, explicit=False"


def _combine(base, h, k, weights, per_sample):
    """``base + h·Σ_j w_j k_j`` (``base`` None: 0) in one op per term: ``add`` with ``alpha``
    for a scalar ``h``, the sum then one ``addcmul`` for per-sample ``h`` (B, 1, ...)."""
    if not weights:
        return base if base is not None else torch.zeros_like(k[0])
    if not per_sample:
        out, scalar = base, not isinstance(h, torch.Tensor)  # (a 0-d tensor h: no alpha)
        for j, w in weights:
            if out is None:
                out = k[j] * (w * h)
            else:
                out = torch.add(out, k[j], alpha=w * h) if scalar else out + (w * h) * k[j]
        return out
    (j0, w0), rest = weights[0], weights[1:]
    total = k[j0] * w0
    for j, w in rest:
        total = torch.add(total, k[j], alpha=w)
    return h * total if base is None else torch.addcmul(base, h, total)


# Kværnø (2004), 3(2), four stages; closed forms of γ's rows as in diffrax's kvaerno3.py.
_G3 = 0.43586652150
_T3 = 1 / (2 * _G3)
_A3 = (
    (0,),
    (_G3, _G3),
    ((-4 * _G3**2 + 6 * _G3 - 1) / (4 * _G3), (-2 * _G3 + 1) / (4 * _G3), _G3),
    (
        (6 * _G3 - 1) / (12 * _G3),
        -1 / ((24 * _G3 - 12) * _G3),
        (-6 * _G3**2 + 6 * _G3 - 1) / (6 * _G3 - 3),
        _G3,
    ),
)
KVAERNO3 = DirkTableau(
    gamma=_G3,
    c=(0.0, 2 * _G3, 1.0, 1.0),
    a=_A3,
    b=_A3[-1],
    b_hat=(*_A3[2], 0.0),
    predictor=((1.0,), (1 - _T3, _T3), _A3[2][:2] + (_G3,)),
    order=3,
    error_order=2,
    tol=1e-11,  # γ is a 12-digit root of its cubic
)

# Kværnø (2004), 5(4), seven stages, γ = 0.26.
_G5 = 0.26
_A5 = (
    (0,),
    (_G5, _G5),
    (0.13, 0.84033320996790809, _G5),
    (0.22371961478320505, 0.47675532319799699, -0.06470895363112615, _G5),
    (0.16648564323248321, 0.10450018841591720, 0.03631482272098715, -0.13090704451073998, _G5),
    (0.13855640231268224, 0.0, -0.04245337201752043, 0.02446657898003141, 0.61943039072480676, _G5),
    (
        0.13659751177640291,
        0.0,
        -0.05496908796538376,
        -0.04118626728321046,
        0.62993304899016403,
        0.06962479448202728,
        _G5,
    ),
)
KVAERNO5 = DirkTableau(
    gamma=_G5,
    c=(0.0, 0.52, 1.230333209967908, 0.8957659843500759, 0.43639360985864756, 1.0, 1.0),
    a=_A5,
    b=_A5[-1],
    b_hat=(*_A5[5], 0.0),
    predictor=(
        (1.0,),
        (-1.366025403784441, 2.3660254037844357),
        (-0.19650552613122207, 0.8113579546496623, 0.38514757148155954),
        (0.10375304369958693, 0.937994698066431, -0.04174774176601781, 0.0),
        (-0.17281112873898072, 0.6235784481025847, 0.5492326806363959, 0.0, 0.0),
        _A5[5][:5] + (_G5,),
    ),
    order=5,
    error_order=4,
)


@register("kvaerno3")
class Kvaerno3(ESDIRK):
    """Kværnø's ESDIRK 3(2): four stages (three implicit, γ ≈ 0.4359), L-stable, stiffly
    accurate, embedded order 2. The cheaper stiff pair, for rtol ≳ 1e-5."""

    tableau = KVAERNO3


@register("kvaerno5")
class Kvaerno5(ESDIRK):
    """Kværnø's ESDIRK 5(4): seven stages (six implicit, γ = 0.26), L-stable, stiffly
    accurate, embedded order 4. The recommended stiff stepper for :func:`physres.integrate`."""

    tableau = KVAERNO5

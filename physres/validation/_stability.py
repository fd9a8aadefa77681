"""The largest stable step size of a stepper on a system, found by search.

Definition (the same as linear stability theory, measured on the code):

* **Linear fields** ``f(t, x) = A x`` (declared through ``linear_operator`` or detected by
  testing linearity at random states): the stepper's one-step map is a matrix ``M(dt)``,
  obtained by stepping the identity basis. A step size is stable when the map grows no
  faster than the exact flow, ``log ρ(M(dt)) ≤ max(0, dt·max Re λ(A)) + 1e-10``: the
  ``N → ∞`` limit of "bounded growth of the solution norm over N steps". For the harmonic
  oscillator this reproduces the analytic boundaries: rk4 ``ω dt ≤ 2√2``, leapfrog
  ``ω dt < 2``; euler, heun and midpoint grow at every dt (``|R(iω dt)| > 1``).
* **Nonlinear fields**: ``steps`` steps from the sampled states stay finite, the implicit
  solves converge, and the norm stays below ``growth`` times the largest norm of the
  reference solution. A finite horizon cannot see growth slower than it.

The search scans ``dt`` geometrically (factor 4) from ``1e-2/ρ`` up to ``1e3/ρ`` (linear) or
``1e2/ρ`` (nonlinear), ``ρ`` the spectral radius of ``A`` (or of the Jacobian at the initial
states), stops at the first unstable dt and bisects between it and the last stable one, so the
result is the end of the interval of stable step sizes that starts at small dt. It is 0 when
the smallest dt tried is already unstable ("unstable at every dt") and inf when every dt tried
is stable. The 0 verdict needs the growth to be measurable at the smallest dt: euler's excess
``y²/2`` and heun's ``y⁴/8`` at ``y = 0.01`` are far above the 1e-10 allowance.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import ConvergenceError
from ..rollout import rollout

TOL_LINEAR = 1e-10  # excess log-growth per step attributed to round-off
MAX_DENSE = 1024  # largest state (real size) for the dense one-step map


def linear_matrix(system, x0: torch.Tensor):
    """``A`` (n, n) when ``system.rhs(t, x) = A x`` with a constant ``A``, else None.

    Uses the declared ``linear_operator``; otherwise tests linearity and time independence at
    random states. States larger than ``MAX_DENSE`` are not densified (returns None).
    """
    n = int(np.prod(x0.shape[1:]))
    if n > MAX_DENSE:
        return None
    op = system.linear_operator(0.0)
    if op is not None and getattr(op, "time_dependent", False):
        return None
    basis = torch.eye(n, dtype=x0.dtype, device=x0.device).reshape(n, *x0.shape[1:])
    with torch.no_grad():
        A = system.rhs(0.0, basis).reshape(n, n).T
        if op is None:
            gen = torch.Generator().manual_seed(1)
            u = torch.randn(3, n, generator=gen, dtype=torch.float64).to(x0.device, x0.dtype)
            u = u.reshape(3, *x0.shape[1:]) * x0.abs().max()
            rhs = system.rhs(0.7, u).reshape(3, n)
            if not torch.allclose(
                rhs,
                u.reshape(3, n) @ A.T,
                rtol=1e-10,
                atol=1e-12 * float(rhs.abs().max().clamp_min(1e-300)),
            ):
                return None
    return A


def largest_stable_dt(stepper, system, x0, *, A=None, scale=1.0, steps=1000, growth=10.0) -> dict:
    """Search the largest stable dt of ``stepper`` (see the module docstring).

    Returns a dict: ``largest_stable_dt`` (float; 0 or inf at the ends), ``status``
    (``"bounded"``, ``"unstable at every dt tried"``, ``"stable at every dt tried"``),
    ``criterion`` (text), ``searched`` (dt_lo, dt_hi), ``measure`` (what ``probes`` holds),
    ``linear`` (bool) and ``probes`` (sorted list of (dt, measure))).
    """
    if A is not None:
        alpha = float(torch.linalg.eigvals(A).real.max())
        rho_a = float(torch.linalg.eigvals(A).abs().max())
        lo, hi, rtol = 1e-2 / (rho_a or 1.0), 1e3 / (rho_a or 1.0), 1e-5
        n = A.shape[0]
        basis = torch.eye(n, dtype=x0.dtype, device=x0.device).reshape(n, *x0.shape[1:])

        def probe(dt):
            try:
                with torch.no_grad():
                    M = stepper.step(basis, 0.0, dt).reshape(n, n).T
            except ConvergenceError:
                return False, math.inf
            if not bool(torch.isfinite(M).all()):
                return False, math.inf
            rho = float(torch.linalg.eigvals(M).abs().max())
            excess = math.log(max(rho, 1e-300)) - max(0.0, dt * alpha)
            return excess <= TOL_LINEAR, excess

        criterion = (
            "linear field: stable when the spectral radius of the stepper's one-step "
            "map ρ(M(dt)) does not exceed that of the exact flow, "
            "max(1, exp(dt·max Re λ(A))), beyond round-off (1e-10 in log ρ): bounded "
            "growth of the solution over arbitrarily many steps."
        )
        measure = "excess growth per step, log ρ(M) − max(0, dt·max Re λ)"
    else:
        rho_j = _jacobian_radius(system, x0)
        lo, hi, rtol = 1e-2 / (rho_j or 1.0), 1e2 / (rho_j or 1.0), 1e-3
        bound = growth * scale

        def probe(dt):
            top = [0.0]

            def watch(n, t, x):  # the largest norm so far; stop at the bound
                size = float(x.abs().reshape(x.shape[0], -1).norm(dim=1).max())
                if size > bound:
                    raise _Unbounded
                top[0] = max(top[0], size)

            try:
                with torch.no_grad():
                    out = rollout(
                        stepper,
                        x0,
                        dt,
                        steps,
                        compile=False,
                        observer=watch,
                        on_divergence="return",
                        full_output=True,
                    )
            except _Unbounded:
                return False, math.inf
            if out.failure is not None:  # non-finite, or an implicit solve failed
                return False, math.inf
            return True, top[0] / scale

        criterion = (
            f"nonlinear field: stable when {steps} steps stay finite, implicit solves "
            f"converge and the norm stays below {growth:g}× the reference's largest "
            "norm."
        )
        measure = "largest norm / reference's largest norm"

    probes = []

    def stable(dt):
        ok, g = probe(dt)
        probes.append((float(dt), float(g)))
        return ok

    grid = lo * 4.0 ** np.arange(int(math.ceil(math.log(hi / lo, 4))) + 1)
    last_ok = None
    for dt in grid:
        if stable(dt):
            last_ok = dt
            continue
        if last_ok is None:
            result, status = 0.0, "unstable at every dt tried"
        else:
            a, b = last_ok, dt
            while b / a > 1 + rtol:
                mid = math.sqrt(a * b)
                a, b = (mid, b) if stable(mid) else (a, mid)
            result, status = a, "bounded"
        break
    else:
        result, status = math.inf, "stable at every dt tried"
    n_curve = (
        61
        if A is not None and A.shape[0] <= 64
        else 17
        if A is not None and A.shape[0] <= 256
        else 0
    )
    for dt in np.geomspace(grid[0], grid[-1], n_curve):  # a curve for the figure, when cheap
        probes.append((float(dt), float(probe(dt)[1])))
    return {
        "largest_stable_dt": float(result),
        "status": status,
        "criterion": criterion,
        "searched": (float(grid[0]), float(grid[-1])),
        "measure": measure,
        "linear": A is not None,
        "probes": sorted(probes),
    }


class _Unbounded(Exception):
    """Raised by the probe's observer when the norm passes the bound."""


def _jacobian_radius(system, x0) -> float:
    """Largest spectral radius of the field's Jacobian over the initial states."""
    jac = getattr(system, "jacobian", None)
    with torch.no_grad():
        if callable(jac) and not x0.is_complex():
            J = jac(0.0, x0)
        else:
            form = x0.reshape(x0.shape[0], -1)
            with torch.enable_grad():
                J = torch.func.vmap(
                    torch.func.jacrev(
                        lambda v: system.rhs(0.0, v.reshape(1, *x0.shape[1:])).reshape(-1)
                    )
                )(form)
        n = int(np.prod(x0.shape[1:]))
        J = J.reshape(x0.shape[0], n, n)
        return float(torch.linalg.eigvals(J).abs().max())

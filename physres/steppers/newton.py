"""Batched Newton solves of the implicit stage equation ``z = b + a·f(τ, z)``.

Every implicit stepper reduces to this equation (see :mod:`physres.steppers.implicit`).
Small states use per-sample Jacobians (the field's analytic ``jacobian`` when it has one, else
``torch.func.jacrev``) and a batched LU solve; large states use Jacobian-free Newton–Krylov
(``torch.func.jvp`` and restarted GMRES). Complex states are solved in their real form, so
non-holomorphic fields (``|ψ|²ψ``) are handled exactly.

The iterations run without autograd; gradients come from one Newton correction at the
solution with a frozen Jacobian, which is implicit differentiation
(``dz/dθ = -J⁻¹ ∂G/∂θ``) at the cost of one linear solve.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import ConvergenceError
from .base import field_owner


@dataclass(frozen=True)
class NewtonOptions:
    """Tolerances of the implicit solve.

    tol : relative size of the last Newton increment at which to stop
        (default 1e-12 in float64, 1e-5 in float32).
    atol : absolute floor of that test, per component (default ``tol``): the increment must
        fall below ``atol + tol·|z|``. Set it near the integrator's ``atol`` when components
        are far below 1 (E5's 1e-22 concentrations).
    max_iter : Newton iterations before :class:`~physres.errors.ConvergenceError`.
    krylov_above : real state size above which Newton–Krylov replaces dense Jacobians.
    krylov_restart, krylov_max_restarts : GMRES(m) settings.
    """

    tol: float | None = None
    atol: float | None = None
    max_iter: int = 30
    krylov_above: int = 128
    krylov_restart: int = 40
    krylov_max_restarts: int = 20


class _RealForm:
    """Maps a (possibly complex) batched state to flat real vectors ``(B, m)`` and back."""

    def __init__(self, like: torch.Tensor):
        self.shape = like.shape
        self.complex = like.is_complex()

    def flat(self, x: torch.Tensor) -> torch.Tensor:
        if self.complex:
            x = torch.view_as_real(x.to(torch.promote_types(x.dtype, torch.complex64)))
        return x.reshape(self.shape[0], -1)

    def state(self, v: torch.Tensor) -> torch.Tensor:
        if self.complex:
            return torch.view_as_complex(v.reshape(*self.shape, 2).contiguous())
        return v.reshape(self.shape)


def solve_stage(
    field,
    tau,
    a,
    b: torch.Tensor,
    *,
    jacobian=None,
    options=NewtonOptions(),
    method: str = "implicit",
    counts=None,
    z0: torch.Tensor | None = None,
    lu: dict | None = None,
) -> torch.Tensor:
    """Solve ``z = b + a·f(τ, z)`` for ``z`` (same shape and dtype as ``b``).

    ``a`` and ``τ`` are floats, or tensors of shape (B,) (one step size per sample). Newton
    starts from ``z0`` (default ``b``). ``jacobian(τ, z) -> (B, n, n)`` is the field's analytic
    Jacobian on flattened real states (used when given and the state is real). ``lu`` (a dict)
    shares the factors of ``I − a·J`` between calls with the same ``a``: the stages of one
    ESDIRK step factor once (simplified Newton); a stale factorisation is refreshed when
    Newton contracts slowly. ``counts`` (a dict, e.g. a stepper's) gets ``nfev``/``njev``
    increments.
    """
    form = _RealForm(b)
    b_flat = form.flat(b)
    m = b_flat.shape[1]
    tol = options.tol or (1e-12 if b_flat.dtype == torch.float64 else 1e-5)
    atol = tol if options.atol is None else options.atol
    a_state = _per_sample(a, b.ndim)

    def G(z_flat):  # residual, flat real (B, m)
        if counts is not None:
            counts["nfev"] += 1
        return z_flat - form.flat(a_state * field(tau, form.state(z_flat))) - b_flat

    use_dense = m <= options.krylov_above
    z = (b_flat if z0 is None else form.flat(z0)).detach().clone()
    factors = lu.get("factors") if lu is not None else None
    fresh, err_prev, err = False, None, math.nan
    converged = singular = False
    with torch.no_grad():
        g = G(z)
        floor = tol * (1 + b_flat.abs().amax(-1))  # residuals below this are round-off
        it = 0
        while it < options.max_iter:
            it += 1
            if use_dense:
                if factors is None:  # reused while Newton contracts fast (as scipy's Radau)
                    factors = _lu_factor(_dense_jacobian(G, z, a, tau, form, jacobian, counts))
                    if factors is None:
                        singular = True
                        break
                    fresh = True
                    if lu is not None:
                        lu["factors"] = factors
                dz = _lu_solve(factors, -g)
            else:
                dz = _gmres(lambda v, z=z: _jvp(G, z, v), -g, options)
                fresh = True
            z_new, g_new, damped = _line_search(G, z, g, dz, floor)
            if damped and not fresh:
                factors = None  # a stale Jacobian gave a poor direction: refresh, retry
                continue
            z, g = z_new, g_new
            err = float((dz.abs() / (atol + tol * z.abs())).pow(2).mean(-1).sqrt().max())
            if not math.isfinite(err):
                break
            if err <= 1 and not damped:
                converged = True
                break
            if err_prev is not None and err > 0.3 * err_prev:
                factors = None  # slow contraction: refresh the Jacobian
            fresh, err_prev = False, err
        if not converged:
            res = float(G(z).abs().max())
            why = " (singular Jacobian)" if singular else ""
            raise ConvergenceError(
                f"Newton did not converge{why} for the {method} step at t={_first(tau):.6g} "
                f"after {it} iterations (max residual {res:.3e}, "
                f"tolerance {tol:.0e}); reduce `dt`, use physres.integrate for adaptive steps, "
                "or raise `max_iter`.",
                residual=res,
                iterations=it,
            )

    if torch.is_grad_enabled() and _needs_grad(b, field):
        z = _implicit_correction(G, z, a, tau, form, jacobian, counts, use_dense, options)
    return form.state(z)


def simplified_newton(
    field,
    tau,
    a,
    b: torch.Tensor,
    z0: torch.Tensor,
    *,
    lu: dict,
    jacobian=None,
    options=NewtonOptions(),
    method: str = "implicit",
    counts=None,
    x_jac: torch.Tensor | None = None,
) -> torch.Tensor:
    """Solve ``z = b + a·f(τ, z)`` by simplified Newton with the factors in ``lu`` (no autograd).

    The lean loop of the ESDIRK stages (Hairer & Wanner, *Solving ODEs II*, §IV.8): one field
    evaluation and one LU solve per iteration, no line search; the contraction rate ``θ`` of
    successive increments decides convergence early (``θ/(1−θ)·‖Δz‖ ≤ 1``). Stale factors
    (from an earlier stage) are refreshed once when Newton contracts slowly or diverges; a
    fresh Jacobian that still fails raises :class:`~physres.errors.ConvergenceError`, on
    which :func:`physres.integrate` retries with a smaller step. Real states of size at most
    ``options.krylov_above``; ``a`` and ``τ`` floats or (B,) tensors. The first Jacobian is
    taken at ``x_jac`` (the step's start, as diffrax does) when given, a refresh at the
    predictor ``z0``.
    """
    B = b.shape[0]
    b_flat = b.reshape(B, -1)
    # Linear contraction leaves up to θ·tol in every stage, and a fifth-order pair reaches 1e-13
    # global errors: without a tolerance from the caller (integrate passes 1e-3·rtol), solve
    # to 1e-14.
    tol = options.tol or (1e-14 if b_flat.dtype == torch.float64 else 1e-6)
    atol = tol if options.atol is None else options.atol
    a_state = _per_sample(a, 2)
    form = _RealForm(b)

    scalar_a = not isinstance(a_state, torch.Tensor)

    def G(z_flat):
        if counts is not None:
            counts["nfev"] += 1
        f = field(tau, z_flat.reshape(b.shape)).reshape(B, -1)
        if scalar_a:
            return torch.sub(z_flat, b_flat).sub_(f, alpha=a_state)
        return torch.addcmul(z_flat - b_flat, a_state, f, value=-1.0)

    start = z0.reshape(B, -1)
    err, it = math.nan, 0
    root_m = math.sqrt(b_flat.shape[1])
    with torch.no_grad():
        for attempt in range(2):
            factors, fresh = lu.get("factors"), False
            if factors is None:
                at = start if attempt or x_jac is None else x_jac.reshape(B, -1)
                factors = _lu_factor(_dense_jacobian(G, at, a, tau, form, jacobian, counts))
                if factors is None:
                    raise ConvergenceError(
                        f"Newton did not converge (singular Jacobian) for the {method} step at "
                        f"t={_first(tau):.6g}; reduce `dt`",
                        residual=math.inf,
                        iterations=0,
                    )
                lu["factors"], fresh = factors, True
            inverse = _small_inverse(lu, factors)
            z, prev = start, None
            for it in range(1, options.max_iter + 1):  # noqa: B007  (reported on failure)
                if inverse is not None:  # one small batched matmul per iteration
                    dz = torch.bmm(inverse, G(z).unsqueeze(-1)).squeeze(-1)  # = −increment
                    z = z - dz
                else:
                    dz = _lu_solve(factors, -G(z))
                    z = z + dz
                # the RMS of the scaled increment, worst sample: ‖dz/(atol + tol·|z|)‖/√m
                scale = z.abs().mul_(tol).add_(atol)
                err = float(torch.linalg.vector_norm(dz.div_(scale), dim=-1).amax()) / root_m
                if not math.isfinite(err):
                    break
                theta = err / prev if prev else 0.0
                if err <= 1 or (0 < theta < 1 and theta / (1 - theta) * err <= 1):
                    return z.reshape(b.shape)
                if theta >= 1 or (theta > 0.5 and not fresh):
                    break  # diverging, or a stale Jacobian contracting slowly
                prev = err
            if fresh:
                break
            lu.pop("factors", None)
    raise ConvergenceError(
        f"Newton did not converge for the {method} step at t={_first(tau):.6g} after {it} "
        f"iterations (last scaled increment {err:.3e}); reduce `dt`, use physres.integrate "
        "for adaptive steps, or raise `max_iter`.",
        residual=err,
        iterations=it,
    )


SMALL_INVERSE_MAX = 16  # simplified Newton multiplies by (I − aJ)⁻¹ up to this size


def _small_inverse(lu: dict, factors):
    """``(I − aJ)⁻¹`` (B, m, m) from the LU factors for m ≤ ``SMALL_INVERSE_MAX`` (cached in
    ``lu`` with the factors it came from), else None: for a few unknowns per sample one batched
    matmul per Newton iteration costs a fraction of a batched LU solve."""
    LU, pivots = factors
    m = LU.shape[-1]
    if m > SMALL_INVERSE_MAX or _one_at_a_time(LU):
        return None
    cached = lu.get("inverse")
    if cached is not None and cached[0] is factors:
        return cached[1]
    eye = torch.eye(m, dtype=LU.dtype, device=LU.device).expand(LU.shape[0], m, m)
    inverse = torch.linalg.lu_solve(LU, pivots, eye)
    lu["inverse"] = (factors, inverse)
    return inverse


def _per_sample(a, ndim: int):
    """A step coefficient as a float, or a (B,) tensor shaped to broadcast over (B, ...)."""
    if isinstance(a, torch.Tensor) and a.ndim > 0:
        return a.reshape(-1, *[1] * (ndim - 1))
    return a


def _first(tau) -> float:
    return float(tau.reshape(-1)[0]) if isinstance(tau, torch.Tensor) else float(tau)


def _line_search(G, z, g, dz, floor, max_halvings: int = 10):
    """Damped Newton (Armijo backtracking, per sample): halve the step of every sample whose
    residual norm would grow. Returns (z_new, g_new, damped) with ``damped`` True when any
    sample took less than the full step."""
    norm = g.norm(dim=-1)
    lam = torch.ones_like(norm)
    z_new = z + dz
    g_new = G(z_new)
    for _ in range(max_halvings):
        new = g_new.norm(dim=-1)
        bad = ~torch.isfinite(new) | ((new > (1 - 1e-4 * lam) * norm) & (new > floor))
        if not bool(bad.any()):
            break
        lam = torch.where(bad, lam / 2, lam)
        z_new = z + lam[:, None] * dz
        g_new = G(z_new)
    return z_new, g_new, bool((lam < 1).any())


def _needs_grad(b, field) -> bool:
    if b.requires_grad:
        return True
    owner = field_owner(field)
    params = owner.parameters() if isinstance(owner, torch.nn.Module) else ()
    return any(p.requires_grad for p in params)


def _dense_jacobian(G, z, a, tau, form, jacobian, counts):
    """Per-sample ``dG/dz``, shape (B, m, m)."""
    B, m = z.shape
    if counts is not None:
        counts["njev"] += 1
    if jacobian is not None and not form.complex:
        eye = torch.eye(m, dtype=z.dtype, device=z.device)
        J = jacobian(tau, form.state(z)).reshape(B, m, m).to(z.dtype)
        return eye - _per_sample(a, 3) * J
    # Samples are independent, so the Jacobian of the batch sum holds every per-sample Jacobian.
    with torch.enable_grad():
        J = torch.func.jacrev(lambda v: G(v).sum(0))(z)  # (m, B, m)
    return J.permute(1, 0, 2)


# torch 2.13's CPU batched LU (getrf/getrs through MKL, several threads) has returned invalid
# pivots and wrong solutions for matrices above ~128 rows; those batches go one matrix at a time.
_BATCHED_LU_MAX = 128


def _one_at_a_time(A: torch.Tensor) -> bool:
    return A.device.type == "cpu" and A.shape[0] > 1 and A.shape[-1] > _BATCHED_LU_MAX


def _lu_factor(J: torch.Tensor):
    """LU factors of a batch (B, m, m), or None when a matrix is singular."""
    if _one_at_a_time(J):
        parts = [torch.linalg.lu_factor_ex(J[i : i + 1]) for i in range(J.shape[0])]
        LU, pivots, info = (torch.cat(p) for p in zip(*parts, strict=True))
    else:
        LU, pivots, info = torch.linalg.lu_factor_ex(J)
    return None if bool((info != 0).any()) else (LU, pivots)


def _lu_solve(factors, rhs: torch.Tensor, adjoint: bool = False) -> torch.Tensor:
    """``J x = rhs`` (or ``J^T x = rhs``) with factors from :func:`_lu_factor`; (B, m)."""
    LU, pivots = factors
    if _one_at_a_time(LU):
        return torch.cat(
            [
                torch.linalg.lu_solve(
                    LU[i : i + 1], pivots[i : i + 1], rhs[i : i + 1, :, None], adjoint=adjoint
                )[..., 0]
                for i in range(LU.shape[0])
            ]
        )
    return torch.linalg.lu_solve(LU, pivots, rhs.unsqueeze(-1), adjoint=adjoint).squeeze(-1)


def _jvp(G, z, v):
    return torch.func.jvp(G, (z,), (v,))[1]


def _gmres(matvec, rhs, options: NewtonOptions, tol: float = 1e-13):
    """Restarted GMRES for a batch of independent systems ``A_i x_i = rhs_i`` (rhs: (B, m))."""
    B, m = rhs.shape
    k = min(options.krylov_restart, m)
    x = torch.zeros_like(rhs)
    rhs_norm = rhs.norm(dim=1).clamp_min(torch.finfo(rhs.dtype).tiny)
    for _ in range(options.krylov_max_restarts):
        r = rhs - matvec(x)
        beta = r.norm(dim=1)
        if bool((beta <= tol * rhs_norm).all()):
            return x
        V = [r / beta.clamp_min(torch.finfo(r.dtype).tiny)[:, None]]
        H = torch.zeros(B, k + 1, k, dtype=rhs.dtype, device=rhs.device)
        for j in range(k):
            w = matvec(V[j])
            for i in range(j + 1):  # modified Gram–Schmidt
                H[:, i, j] = (V[i] * w).sum(1)
                w = w - H[:, i, j, None] * V[i]
            H[:, j + 1, j] = w.norm(dim=1)
            V.append(w / H[:, j + 1, j].clamp_min(torch.finfo(w.dtype).tiny)[:, None])
        e1 = torch.zeros(B, k + 1, 1, dtype=rhs.dtype, device=rhs.device)
        e1[:, 0, 0] = beta
        y = torch.linalg.lstsq(H, e1).solution.squeeze(-1)  # (B, k)
        x = x + torch.einsum("bk,kbm->bm", y, torch.stack(V[:k]))
    return x


class _LinearSolve(torch.autograd.Function):
    """``J⁻¹ g`` with ``J`` frozen: forward and backward are (transposed) GMRES solves."""

    @staticmethod
    def forward(ctx, g, solve, solve_transposed):
        ctx.solve_transposed = solve_transposed
        return solve(g.detach())

    @staticmethod
    def backward(ctx, grad):
        return ctx.solve_transposed(grad), None, None


def _implicit_correction(G, z, a, tau, form, jacobian, counts, use_dense, options):
    """One Newton step at the solution with autograd on: exact implicit-function gradients."""
    z = z.detach()
    g = G(z)  # carries the graph to b and the field's parameters
    if use_dense:
        with torch.no_grad():
            factors = _lu_factor(_dense_jacobian(G, z, a, tau, form, jacobian, counts))
        if factors is None:  # invariant: the forward solve converged with these Jacobians
            raise ConvergenceError("singular Jacobian at the solution", residual=0.0, iterations=0)
        return z - _LinearSolve.apply(
            g, lambda r: _lu_solve(factors, r), lambda r: _lu_solve(factors, r, adjoint=True)
        )
    with torch.no_grad():
        _, vjp = torch.func.vjp(G, z)
    solve = lambda r: _gmres(lambda v: _jvp(G, z, v), r, options)  # noqa: E731
    solve_t = lambda r: _gmres(lambda v: vjp(v)[0], r, options)  # noqa: E731
    return z - _LinearSolve.apply(g, solve, solve_t)


# --- the masked, traceable path (compiled adaptive loop) --------------------------------------
#
# Everything below is tensor operations with no Python control flow on tensor values and no
# host sync, so that it traces into a ``torch.compile`` graph (inside ``while_loop``): every
# sample carries its own convergence flags, and a sample that has converged or failed is frozen
# by masks instead of leaving the batch.

MASKED_KAPPA = 1.0  # converged when θ/(1−θ)·‖Δz‖ ≤ κ in the norm of the Newton tolerances


def traceable_jacobian(field, jacobian, t, x: torch.Tensor) -> torch.Tensor:
    """Per-sample ``df/dx`` (B, m, m) on flattened real states, traceable: the field's
    analytic ``jacobian(t, x)`` when given, else forward-mode ``torch.func.jvp`` along the m
    unit vectors (m ≤ ``SMALL_INVERSE_MAX``) or ``torch.func.jacrev`` of the batch sum."""
    B = x.shape[0]
    m = x[0].numel()
    if jacobian is not None:
        return jacobian(t, x).reshape(B, m, m).to(x.dtype)

    def flat_field(v):
        return field(t, v.reshape(x.shape)).reshape(B, m)

    v = x.reshape(B, m)
    if m <= SMALL_INVERSE_MAX:
        eye = torch.eye(m, dtype=x.dtype, device=x.device)
        cols = [torch.func.jvp(flat_field, (v,), (eye[i].expand(B, m),))[1] for i in range(m)]
        return torch.stack(cols, -1)
    J = torch.func.jacrev(lambda u: flat_field(u).sum(0))(v)  # (m, B, m)
    return J.permute(1, 0, 2)


def gauss_jordan_inverse(M: torch.Tensor):
    """``(M⁻¹, ok)`` of a batch (B, m, m) by Gauss–Jordan elimination with partial pivoting,
    unrolled over the m columns as pointwise tensor operations (no LAPACK call: inside a
    compiled loop a LAPACK call goes through a slow fallback). ``ok`` (B,) is False where a
    pivot is zero or the inverse is not finite. For the small systems of
    ``SMALL_INVERSE_MAX`` unknowns or fewer."""
    B, m, _ = M.shape
    eye = torch.eye(m, dtype=M.dtype, device=M.device)
    A = torch.cat([M, eye.expand(B, m, m)], -1)
    rows = torch.arange(m, device=M.device)
    ok = torch.ones(B, dtype=torch.bool, device=M.device)
    for k in range(m):
        col = A[:, :, k].abs().masked_fill(rows < k, -1.0)
        p = col.argmax(-1, keepdim=True)  # (B, 1): the pivot row
        idx = rows.expand(B, m)
        perm = torch.where(idx == k, p, torch.where(idx == p, k, idx))  # swap rows k and p
        A = A.gather(1, perm.unsqueeze(-1).expand(B, m, 2 * m))
        pivot = A[:, k, k]
        ok = ok & (pivot != 0)
        row = A[:, k, :] / torch.where(pivot != 0, pivot, 1.0).unsqueeze(-1)
        A = torch.where(
            (rows == k).reshape(1, m, 1),
            row.unsqueeze(1),
            A - A[:, :, k : k + 1] * row.unsqueeze(1),
        )
    inverse = A[:, :, m:]
    return inverse, ok & torch.isfinite(inverse).flatten(1).all(1)


def masked_factor(M: torch.Tensor):
    """``(solve, ok)`` for ``M x = r`` per sample, traceable: ``solve(r)`` (B, m) -> (B, m)
    multiplies by the explicit inverse for m ≤ ``SMALL_INVERSE_MAX``, else uses LU factors;
    ``ok`` (B,) is False where ``M`` is singular."""
    m = M.shape[-1]
    if m <= SMALL_INVERSE_MAX:
        inverse, ok = gauss_jordan_inverse(M)
        return (lambda r: torch.bmm(inverse, r.unsqueeze(-1)).squeeze(-1)), ok
    LU, pivots, info = torch.linalg.lu_factor_ex(M)
    ok = info == 0
    return (lambda r: torch.linalg.lu_solve(LU, pivots, r.unsqueeze(-1)).squeeze(-1)), ok


def masked_newton(residual, z0, solve, live, *, tol, atol, max_iter, kappa=MASKED_KAPPA):
    """Simplified Newton for ``residual(z) = 0`` with a fixed factorisation, per sample and
    masked: ``z ← z − solve(residual(z))`` for at most ``max_iter`` iterations.

    A sample converges when ``θ/(1−θ)·‖Δz‖ ≤ κ`` (``θ`` the contraction rate of successive
    increments, so the first test comes after two iterations; Hairer & Wanner, *Solving ODEs
    II*, §IV.8; optimistix's ``Chord`` with diffrax's ``kappa``) or when an increment is below
    ``10⁻³·κ``; it fails when ``θ ≥ 1``, when the increment is not finite, or at the cap.
    ``‖·‖`` is the RMS of ``Δz/(atol + tol·|z|)``. Samples not ``live`` (B,) are not iterated.
    The iterations are a ``while_loop`` that stops once every sample has converged or failed.

    Returns ``(z, converged, evaluations, iterations)``: ``converged`` (B,) bool,
    ``evaluations`` (B,) residual evaluations per sample, ``iterations`` the batched
    iterations (a 0-d tensor).
    """
    from torch._higher_order_ops import while_loop

    B, m = z0.shape
    dev = z0.device
    f64 = dict(dtype=torch.float64, device=dev)
    root_m = m**-0.5

    def cond(it, z, prev, done, conv, n):
        return (it < max_iter) & (~done).any()

    def body(it, z, prev, done, conv, n):
        dz = solve(residual(z))
        z_new = z - dz
        scale = z_new.abs() * tol + atol
        err = (torch.linalg.vector_norm(dz / scale, dim=-1) * root_m).to(torch.float64)
        rate = err / prev  # prev = inf before the first increment: rate 0, not tested
        tested = it > 0
        small = err <= 1e-3 * kappa
        converged = small | (tested & (rate < 1) & (err * rate <= kappa * (1 - rate)))
        failed = ~converged & (~torch.isfinite(err) | (tested & (rate >= 1)))
        go = ~done
        z = torch.where(go.unsqueeze(-1), z_new, z)
        n = n + go.long()
        conv = conv | (go & converged)
        done = done | (go & (converged | failed))
        prev = torch.where(go, err, prev)
        return it + 1, z, prev, done, conv, n

    start = (
        torch.zeros((), dtype=torch.long, device=dev),
        z0.clone(),
        torch.full((B,), math.inf, **f64),
        ~live,
        torch.zeros(B, dtype=torch.bool, device=dev),
        torch.zeros(B, dtype=torch.long, device=dev),
    )
    it, z, _, _, conv, n = while_loop(cond, body, start)
    return z, conv, n, it

"""Scaled real-symmetric banded operators ``A = s·M`` with O(N) shifted solves.

A finite-difference Hamiltonian is a real symmetric band matrix ``M`` (tridiagonal for a
3-point stencil, pentadiagonal for a 5-point one), cyclic on a periodic grid. The field of the
Schrödinger equation is ``A = -(i/ħ)·M``. ``solve_shifted`` factorises the band part of
``I - a·A`` once per ``a`` (LAPACK ``zgbtrf``) and solves a whole batch of right-hand sides in
one ``zgbtrs`` call; the cyclic corners are a rank-``2p`` Woodbury correction. Cost per solve:
O(N·p) per trajectory, never a dense solve.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg.lapack as lapack
import scipy.sparse as sp
import torch

from .linear import LinearOperator, _key


class BandedOperator(LinearOperator):
    """``A = scale · M`` with ``M`` real symmetric banded, acting on states ``(batch, n)``.

    Parameters
    ----------
    bands : array, shape (p + 1, n), float64
        ``bands[k, i] = M[i, i + k]`` (``k``-th superdiagonal). With ``periodic=True`` the
        entries with ``i + k >= n`` couple ``i`` to ``i + k - n`` (cyclic corners); otherwise
        they must be zero.
    scale : complex or float
        E.g. ``-1j/ħ`` for the Schrödinger field, ``-1/ħ`` in imaginary time.
    periodic : bool
    time_dependent : bool
        Marks operators built for a particular ``t`` (the ``exponential`` stepper refuses them).
    """

    def __init__(self, bands, scale=1.0, *, periodic: bool = False, time_dependent: bool = False):
        bands = np.asarray(bands, dtype=np.float64)
        if bands.ndim != 2 or bands.shape[0] < 1:
            raise ValueError(f"`bands` must have shape (p + 1, n), got {bands.shape}")
        p, n = bands.shape[0] - 1, bands.shape[1]
        if n < 2 * p + 2:
            raise ValueError(f"`bands`: n = {n} is too small for bandwidth {p}")
        if not periodic:
            for k in range(1, p + 1):
                if np.any(bands[k, n - k :]):
                    raise ValueError("`bands`: wrap-around entries must be zero unless periodic")
        super().__init__((n,))
        self.bands, self.p, self.n = bands, p, n
        self.scale = complex(scale)
        self.periodic = periodic
        self.time_dependent = time_dependent
        self._diag = torch.from_numpy(bands[0].copy())
        self._up = [torch.from_numpy(bands[k].copy()) for k in range(1, p + 1)]
        self._lo = [torch.roll(u, k) for k, u in enumerate(self._up, start=1)]  # M[i, i-k]
        self._factors: dict[complex, tuple] = {}
        self._eigh = None

    # --- products ----------------------------------------------------------------------------
    def apply_matrix(self, x: torch.Tensor) -> torch.Tensor:
        """``M x`` (unscaled), ``x`` of shape (..., n); on a periodic grid via rolls."""
        dev = x.device
        y = self._diag.to(dev) * x
        for k, (u, lo) in enumerate(zip(self._up, self._lo, strict=True), start=1):
            y = y + u.to(dev) * torch.roll(x, -k, -1) + lo.to(dev) * torch.roll(x, k, -1)
        return y

    def matvec(self, x):
        return self.apply_matrix(x) * _as_scalar(self.scale, x)

    def sparse(self) -> sp.csr_matrix:
        """``A`` as a scipy sparse matrix (for ``expm_multiply`` references)."""
        return (self.matrix() * self.scale).tocsr()

    def matrix(self) -> sp.csr_matrix:
        """``M`` (unscaled, real) as a scipy sparse matrix."""
        n = self.n
        idx = np.arange(n)
        rows, cols, vals = [idx], [idx], [self.bands[0]]
        for k in range(1, self.p + 1):
            keep = self.bands[k] != 0
            i, j = idx[keep], (idx[keep] + k) % n
            rows += [i, j]
            cols += [j, i]
            vals += [self.bands[k][keep]] * 2
        M = sp.coo_matrix(
            (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)
        )
        return M.tocsr()

    def dense(self) -> torch.Tensor:
        return torch.from_numpy(self.sparse().toarray())

    # --- shifted solve -----------------------------------------------------------------------
    def _factor(self, a):
        key = _key(a)
        if key not in self._factors:
            if len(self._factors) > 8:  # bounded cache: adaptive runs use many distinct a
                self._factors.clear()
            self._factors[key] = _factorise(self.bands, key * self.scale, self.periodic)
        return self._factors[key]

    def solve_shifted(self, a, b):
        """``z`` with ``(I - a·A) z = b``; ``b`` of shape (..., n). Differentiable in ``b``."""
        return _BandedSolve.apply(b, self, a)

    def _solve(self, a, b: torch.Tensor) -> torch.Tensor:
        return _apply_factor(self._factor(a), b)

    # --- exponential -------------------------------------------------------------------------
    def expm_apply(self, a, x):
        """``exp(a·A) x`` through the (cached) eigendecomposition of ``M``; O(N²) per state."""
        if self._eigh is None:
            w, Q = np.linalg.eigh(self.matrix().toarray())
            self._eigh = (torch.from_numpy(w), torch.from_numpy(Q).to(torch.complex128))
        w, Q = self._eigh
        phase = expi(complex(_key(a) * self.scale), w)
        Q = Q.to(x.device)
        return ((x.to(torch.complex128) @ Q) * phase.to(x.device)) @ Q.T


def expi(c: complex, w: torch.Tensor) -> torch.Tensor:
    """``exp(c·w)`` for a complex scalar ``c`` and real ``w`` (``torch.polar``: torch's complex
    ``exp`` is orders of magnitude slower on CPU)."""
    c = complex(c)
    modulus = torch.ones_like(w) if c.real == 0 else torch.exp(c.real * w)
    return torch.polar(modulus, c.imag * w)


class _BandedSolve(torch.autograd.Function):
    """``(I - aA)^{-1} b`` with its adjoint: ``I - aA`` is complex symmetric, so
    ``(I - aA)^{-H} g = conj((I - aA)^{-1} conj(g))``."""

    @staticmethod
    def forward(ctx, b, op, a):
        ctx.op, ctx.a = op, a
        return op._solve(a, b)

    @staticmethod
    def backward(ctx, grad):
        return ctx.op._solve(ctx.a, grad.conj()).conj(), None, None


def solve_banded(
    bands: torch.Tensor, c: complex, b: torch.Tensor, *, periodic: bool = False
) -> torch.Tensor:
    """``z`` with ``(I - c·M) z = b`` for ``M`` real symmetric banded; O(N·p²) per call.

    ``bands`` (p + 1, n) real, stored as in :class:`BandedOperator`; ``b`` (..., n). Unlike
    :meth:`BandedOperator.solve_shifted` this is differentiable in ``bands`` too, so a learned
    band matrix (e.g. a Hermitian ``H_θ`` stepped by Cayley) trains without a dense solve.
    """
    if bands.dim() != 2 or bands.is_complex():
        raise ValueError(
            f"`bands` must be a real (p + 1, n) tensor, got shape "
            f"{tuple(bands.shape)} and dtype {bands.dtype}"
        )
    if b.shape[-1] != bands.shape[1]:
        raise ValueError(f"`b` has last dimension {b.shape[-1]}, `bands` has n = {bands.shape[1]}")
    if bands.shape[1] < 2 * bands.shape[0]:
        raise ValueError(
            f"`bands`: n = {bands.shape[1]} is too small for bandwidth {bands.shape[0] - 1}"
        )
    return _BandMatrixSolve.apply(bands, b, complex(c), bool(periodic))


def cayley_banded(
    bands: torch.Tensor, c: complex, psi: torch.Tensor, v=None, *, periodic: bool = False
) -> torch.Tensor:
    """The Cayley step ``(I − cH)⁻¹(I + cH)ψ = 2(I − cH)⁻¹ψ − ψ`` with ``H = M + diag(v_b)``.

    ``bands`` holds ``M`` as in :func:`solve_banded`; ``psi`` (batch, ..., n); ``v`` None (one
    ``H`` for the whole batch) or (batch, n), a potential per sample (one band solve each).
    Unitary for real ``M``, ``v`` and imaginary ``c``; differentiable in all three.
    """
    if v is None:
        return 2 * solve_banded(bands, c, psi, periodic=periodic) - psi
    out = [
        solve_banded(torch.cat([bands[:1] + v[b], bands[1:]]), c, psi[b : b + 1], periodic=periodic)
        for b in range(psi.shape[0])
    ]
    return 2 * torch.cat(out) - psi


class _BandMatrixSolve(torch.autograd.Function):
    """``y = A⁻¹ b``, ``A = I - c·M(bands)`` complex symmetric. Adjoint:
    ``ḡ_b = conj(A⁻¹ conj(ḡ_y))`` and ``ḡ_M = Re(conj(c)·Σ_batch ḡ_b ⊗ conj(y))``, folded onto
    the symmetric bands."""

    @staticmethod
    def forward(ctx, bands, b, c, periodic):
        factor = _factorise(bands.detach().cpu().numpy(), c, periodic)
        y = _apply_factor(factor, b)
        ctx.factor, ctx.c, ctx.periodic = factor, c, periodic
        ctx.save_for_backward(bands, y)
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        bands, y = ctx.saved_tensors
        gb = _apply_factor(ctx.factor, grad.conj()).conj()
        grad_bands = None
        if ctx.needs_input_grad[0]:
            n = bands.shape[1]
            g2, y2 = gb.reshape(-1, n), y.reshape(-1, n).conj()
            rows = [(g2 * y2).sum(0)]
            for k in range(1, bands.shape[0]):
                fold = (g2 * torch.roll(y2, -k, -1) + torch.roll(g2, -k, -1) * y2).sum(0)
                if not ctx.periodic:
                    fold[n - k :] = 0
                rows.append(fold)
            grad_bands = (torch.stack(rows) * ctx.c.conjugate()).real.to(bands)
        return grad_bands, gb if ctx.needs_input_grad[1] else None, None, None


def _apply_factor(factor, b: torch.Tensor) -> torch.Tensor:
    """Solve with a factor from :func:`_factorise`, for ``b`` of shape (..., n)."""
    lu, piv, corr = factor
    n, p = lu.shape[1], (lu.shape[0] - 1) // 3
    flat = b.detach().to("cpu", torch.complex128).reshape(-1, n)
    rhs = flat.resolve_conj().numpy().T  # (n, batch), Fortran order
    y, info = lapack.zgbtrs(lu, p, p, rhs, piv)
    if info != 0:  # invariant: zgbtrs only fails on malformed arguments
        raise RuntimeError(f"zgbtrs failed with info={info}")
    out = torch.from_numpy(y.T)  # (batch, n), a view
    if corr is not None:
        S, Gt = corr  # z = y - y[S] Gᵀ
        out = torch.addmm(out, out[:, S], Gt, alpha=-1)
    return out.contiguous().reshape(b.shape).to(b.device)


def _as_scalar(s: complex, x: torch.Tensor):
    return s.real if (s.imag == 0 and not x.is_complex()) else s


def _factorise(bands: np.ndarray, c: complex, periodic: bool):
    """LU of the band part of ``I - c·M`` and, if periodic, the Woodbury corner correction."""
    p, n = bands.shape[0] - 1, bands.shape[1]
    ab = np.zeros((3 * p + 1, n), dtype=np.complex128)  # LAPACK band storage with kl = ku = p
    ab[2 * p] = 1.0 - c * bands[0]
    for k in range(1, p + 1):
        inner = bands[k, : n - k]
        ab[2 * p - k, k:] = -c * inner  # superdiagonal k: A[i, i+k] at row 2p - k, column i + k
        ab[2 * p + k, : n - k] = -c * inner  # subdiagonal k: A[i+k, i] at row 2p + k, column i
    lu, piv, info = lapack.zgbtrf(ab, p, p)
    if info != 0:
        raise np.linalg.LinAlgError(
            f"`I - a·A` is singular (zgbtrf info={info}); choose another dt"
        )
    if not periodic:
        return lu, piv, None
    # corners: W[i, i+k-n] = W[i+k-n, i] = -c·bands[k, i] for i >= n - k
    S = np.r_[np.arange(p), np.arange(n - p, n)]
    pos = {int(j): m for m, j in enumerate(S)}
    K = np.zeros((2 * p, 2 * p), dtype=np.complex128)
    for k in range(1, p + 1):
        for i in range(n - k, n):
            j = i + k - n
            K[pos[i], pos[j]] += -c * bands[k, i]
            K[pos[j], pos[i]] += -c * bands[k, i]
    U = np.zeros((n, 2 * p), dtype=np.complex128)
    U[S, np.arange(2 * p)] = 1.0
    Z, info = lapack.zgbtrs(lu, p, p, U, piv)  # B^{-1} U, (n, 2p)
    small = np.eye(2 * p) + Z[S] @ K  # I + Uᵀ B^{-1} U K
    G = Z @ K @ np.linalg.inv(small)  # (n, 2p)
    return lu, piv, (torch.from_numpy(S), torch.from_numpy(np.ascontiguousarray(G.T)))

"""Discrete one-body Hamiltonians ``H(t) = T + V(x) + E(t)·x`` on a :class:`Grid1D`.

Kinetic energy ``T = -(ħ²/2m) ∂²``:

- ``fd3``: 3-point stencil, O(h²) error; ``fd5``: 5-point stencil, O(h⁴) (on a Dirichlet
  grid the ghost points are odd images, ψ₋₂ = −ψ₀, which keeps the matrix symmetric and
  diagonal in the sine basis);
- ``spectral``: exact ``ħ²k²/2m`` in the FFT (periodic) or sine (Dirichlet) basis.

Every kinetic operator is diagonal in the grid's transform with the eigenvalues
``kinetic_symbol``, which is what the split-operator step uses, so split-operator, implicit
and reference propagators all act on the same discrete ``H``.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse.linalg as spla
import torch

from ...steppers.banded import BandedOperator
from .grid import Grid1D
from .operators import SpectralOperator

KINETICS = ("fd3", "fd5", "spectral")
DENSE_EIGEN_MAX = 1024  # grids up to this size may ask eigenstates for their full basis
SPARSE_K_MAX = 64  # fd grids: below this many states, the sparse shift-invert solver
_STENCILS = {"fd3": (-2.0, 1.0), "fd5": (-5.0 / 2, 4.0 / 3, -1.0 / 12)}  # ∂² coefficients ·h²


class Hamiltonian:
    """``H(t) = T + V + E(t)·x`` (real symmetric on the grid).

    Parameters
    ----------
    grid : Grid1D
    potential : array (n,) — ``V`` on the grid points.
    kinetic : "fd3", "fd5" or "spectral"
    hbar, mass : float > 0
    field : callable ``E(t)`` or None
    """

    def __init__(
        self,
        grid: Grid1D,
        potential,
        kinetic: str = "fd3",
        hbar: float = 1.0,
        mass: float = 1.0,
        field=None,
    ):
        if kinetic not in KINETICS:
            raise ValueError(f"`kinetic` must be one of {KINETICS}, got {kinetic!r}")
        self.grid, self.kinetic, self.hbar, self.mass, self.field = grid, kinetic, hbar, mass, field
        self.V_np = np.asarray(potential, dtype=np.float64)
        self.V = torch.from_numpy(self.V_np)
        self.kinetic_symbol = torch.from_numpy(self._symbol())  # (n,)
        self._static: dict = {}

    # --- kinetic energy --------------------------------------------------------------------
    def _symbol(self) -> np.ndarray:
        g, c = self.grid, self.hbar**2 / (2 * self.mass)
        if self.kinetic == "spectral":
            return c * g.k**2
        kh = g.k * g.dx
        coeffs = _STENCILS[self.kinetic]
        d2 = coeffs[0] + sum(2 * ck * np.cos(j * kh) for j, ck in enumerate(coeffs[1:], 1))
        return -c * d2 / g.dx**2

    def kinetic_bands(self) -> np.ndarray:
        """``T`` in symmetric band storage ``(p + 1, n)`` (finite differences only)."""
        if self.kinetic == "spectral":
            raise ValueError("`kinetic='spectral'` has no band form")
        g, coeffs = self.grid, _STENCILS[self.kinetic]
        scale = -(self.hbar**2) / (2 * self.mass * g.dx**2)
        bands = np.zeros((len(coeffs), g.n))
        for k, ck in enumerate(coeffs):
            bands[k] = scale * ck
            if k and g.boundary == "dirichlet":
                bands[k, g.n - k :] = 0.0
        if self.kinetic == "fd5" and g.boundary == "dirichlet":  # odd ghosts ψ₋₂ = −ψ₀
            bands[0, [0, -1]] -= scale * coeffs[2]
        return bands

    # --- the full operator -----------------------------------------------------------------
    def potential_at(self, t=0.0) -> torch.Tensor:
        """``V + E(t)·x``, shape (n,)."""
        if self.field is None:
            return self.V
        return self.V + float(self.field(t)) * self.grid.x

    def operator(self, t=0.0, scale=None, potential=None):
        """``scale·H(t)`` as a LinearOperator (banded for fd, matrix-free for spectral).

        ``scale`` defaults to ``-i/ħ`` (the Schrödinger field). ``potential`` (shape (n,) or
        (batch, n)) replaces ``V + E(t)·x``, e.g. a frozen nonlinear potential.
        """
        scale = -1j / self.hbar if scale is None else scale
        frozen = potential is None and self.field is None
        key = complex(scale)
        if frozen and key in self._static:
            return self._static[key]
        v = self.potential_at(t) if potential is None else potential
        td = not frozen and potential is None
        if self.kinetic == "spectral" or v.dim() > 1:
            op = (
                SpectralOperator(self.grid, self.kinetic_symbol, v, scale, time_dependent=td)
                if self.kinetic == "spectral"
                else _BatchedBanded(self, v, scale)
            )
        else:
            bands = self.kinetic_bands()
            bands[0] += v.numpy()
            op = BandedOperator(
                bands, scale, periodic=self.grid.boundary == "periodic", time_dependent=td
            )
        if frozen:
            self._static[key] = op
        return op

    def apply(self, psi: torch.Tensor, t=0.0, potential=None) -> torch.Tensor:
        """``H ψ`` along the last axis; ``potential`` (broadcastable) replaces ``V + E(t)·x``."""
        v = self.potential_at(t) if potential is None else potential
        return self.apply_kinetic(psi) + v.to(psi.device) * psi

    def apply_kinetic(self, psi: torch.Tensor) -> torch.Tensor:
        """``T ψ`` along the last axis."""
        if self.kinetic == "spectral":
            g = self.grid
            return g.inverse(self.kinetic_symbol.to(psi.device) * g.forward(psi))
        if "T" not in self._static:
            self._static["T"] = BandedOperator(
                self.kinetic_bands(), 1.0, periodic=self.grid.boundary == "periodic"
            )
        return self._static["T"].apply_matrix(psi)

    def expectation(self, psi: torch.Tensor, t=0.0, potential=None) -> torch.Tensor:
        """``⟨ψ|H|ψ⟩ = Σ ψ* Hψ dx`` (real), shape ``psi.shape[:-1]``."""
        return self.grid.integrate((psi.conj() * self.apply(psi, t, potential)).real)

    def check_hermitian(self, t=0.0, rtol: float = 1e-12, seed: int = 0) -> float:
        """Check ``⟨u, Hv⟩ = ⟨Hu, v⟩`` on random complex vectors; returns the relative defect.

        Raises ``ValueError`` when the defect exceeds ``rtol``.
        """
        gen = torch.Generator().manual_seed(seed)
        u, v = (
            torch.randn(2, self.grid.n, generator=gen, dtype=torch.complex128) for _ in range(2)
        )
        lhs = (u.conj() * self.apply(v, t)).sum(-1)
        rhs = (self.apply(u, t).conj() * v).sum(-1)
        scale = (u.abs() * self.apply(v, t).abs()).sum(-1)
        defect = float(((lhs - rhs).abs() / scale).max())
        if not defect <= rtol:
            raise ValueError(
                f"the Hamiltonian is not Hermitian: relative defect {defect:.2e} > {rtol:.0e}"
            )
        return defect

    def eigenstates(self, k: int, t=0.0, potential=None):
        """The ``k`` lowest eigenpairs: a dense ``numpy.linalg.eigh`` on grids of at most
        :data:`DENSE_EIGEN_MAX` points (any ``k`` up to ``n``, the full basis), else
        ``scipy.sparse.linalg.eigsh`` (``k`` up to ``n − 2``).

        Returns
        -------
        energies : Tensor (k,) float64, ascending
        states : Tensor (k, n) complex128, real-valued, ``Σ|φ|² dx = 1``, the largest-|φ|
            entry positive.
        """
        n = self.grid.n
        dense = n <= DENSE_EIGEN_MAX
        k_max = n if dense else n - 2
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= k_max:
            how = (
                "the grid's n"
                if dense
                else f"n − 2 for the sparse solver used above {DENSE_EIGEN_MAX} points"
            )
            raise ValueError(f"`k` must be an int in [1, {k_max}] ({how}; n = {n}), got {k!r}")
        v = (self.potential_at(t) if potential is None else potential).numpy()
        if self.kinetic == "spectral":
            op = SpectralOperator(self.grid, self.kinetic_symbol, torch.from_numpy(v), 1.0)
            if dense:
                M = op.dense().numpy().real
                w, Q = np.linalg.eigh(0.5 * (M + M.T))
                w, Q = w[:k], Q[:, :k]
            else:
                lin = spla.LinearOperator(
                    (n, n),
                    dtype=np.float64,
                    matvec=lambda y: (
                        op.apply_matrix(torch.from_numpy(y.reshape(1, -1).astype(np.complex128)))
                        .real.numpy()
                        .reshape(-1)
                    ),
                )
                w, Q = spla.eigsh(lin, k=k, which="SA", tol=1e-13)
        else:
            bands = self.kinetic_bands()
            bands[0] += v
            M = BandedOperator(bands, 1.0, periodic=self.grid.boundary == "periodic").matrix()
            if dense and k >= min(n - 1, SPARSE_K_MAX):  # eigsh is faster for a few states
                A = M.toarray().real
                w, Q = np.linalg.eigh(0.5 * (A + A.T))
                w, Q = w[:k], Q[:, :k]
            else:
                w, Q = spla.eigsh(M.tocsc(), k=k, sigma=float(v.min()) - 1.0, which="LM", tol=1e-14)
        order = np.argsort(w)
        w, Q = w[order], Q[:, order]
        Q = Q / np.sqrt((Q**2).sum(0) * self.grid.dx)
        Q = Q * np.sign(Q[np.abs(Q).argmax(0), np.arange(Q.shape[1])])
        return torch.from_numpy(w.copy()), torch.from_numpy(np.ascontiguousarray(Q.T)).to(
            torch.complex128
        )


class _BatchedBanded(SpectralOperator):
    """An fd Hamiltonian with a per-sample potential (frozen nonlinear potentials):
    products by rolls, shifted solves by GMRES preconditioned with the mean-potential band
    solve."""

    def __init__(self, ham: Hamiltonian, v, scale):
        super().__init__(ham.grid, ham.kinetic_symbol, v, scale)
        self.ham = ham

    def apply_matrix(self, x):
        return self.ham.apply_kinetic(x) + self.potential.to(x.device) * x

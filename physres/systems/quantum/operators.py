"""Matrix-free ``A = s·(T + diag v)`` with a spectral kinetic energy ``T`` (FFT or sine basis).

The shifted solve ``(I - a·A) z = b`` is one spectral division when ``v`` is constant, and
otherwise restarted GMRES right-preconditioned by that division with ``v`` replaced by its mean
(Saad & Schultz 1986); a few iterations suffice unless ``|a|·max|v - v̄|`` is large.
"""

from __future__ import annotations

import numpy as np
import torch

from ...errors import ConvergenceError
from ...steppers.banded import expi
from ...steppers.linear import LinearOperator, _key


class SpectralOperator(LinearOperator):
    """``A = scale·(T + diag(v))`` on states ``(batch, n)``.

    Parameters
    ----------
    grid : Grid1D (its ``forward``/``inverse`` diagonalise ``T``)
    symbol : Tensor (n,) — eigenvalues of ``T`` in the grid's transform order.
    potential : Tensor (n,) or (batch, n), real
    scale : complex
    """

    def __init__(
        self,
        grid,
        symbol,
        potential,
        scale=1.0,
        *,
        time_dependent: bool = False,
        tol: float = 1e-13,
        restart: int = 30,
        max_restarts: int = 50,
    ):
        super().__init__((grid.n,))
        self.grid, self.symbol, self.potential = grid, symbol, potential
        self.scale = complex(scale)
        self.time_dependent = time_dependent
        self.tol, self.restart, self.max_restarts = tol, restart, max_restarts
        self._eigh = None

    def apply_matrix(self, x):
        """``(T + v) x``, unscaled."""
        g = self.grid
        return g.inverse(self.symbol.to(x.device) * g.forward(x)) + self.potential.to(x.device) * x

    def matvec(self, x):
        return self.apply_matrix(x) * self.scale

    def solve_shifted(self, a, b):
        c = _key(a) * self.scale  # (I - c (T + v)) z = b
        g, v = self.grid, self.potential.to(b.device)
        vbar = v.mean(-1, keepdim=True)
        sym = self.symbol.to(b.device)

        def precond(r):
            return g.inverse(g.forward(r) / (1 - c * (sym + vbar)))

        if bool((v == vbar).all()):
            return precond(b.to(torch.complex128))
        return _gmres(
            lambda z: z - c * self.apply_matrix(z),
            b.to(torch.complex128),
            precond,
            self.tol,
            self.restart,
            self.max_restarts,
        )

    def dense(self) -> torch.Tensor:
        if self.potential.dim() > 1:
            raise ValueError("a per-sample potential has no single dense matrix")
        eye = torch.eye(self.grid.n, dtype=torch.complex128)
        return self.matvec(eye).T  # column j = A e_j

    def expm_apply(self, a, x):
        """``exp(a·A) x`` through the cached eigendecomposition of ``T + v``."""
        if self._eigh is None:
            M = (self.dense() / self.scale).numpy()
            w, Q = np.linalg.eigh(0.5 * (M + M.conj().T))
            self._eigh = (torch.from_numpy(w), torch.from_numpy(Q).to(torch.complex128))
        w, Q = self._eigh
        phase = expi(complex(_key(a) * self.scale), w)
        xc = x.to(torch.complex128)
        return ((xc @ Q.conj()) * phase) @ Q.T


def _gmres(matvec, b, precond, tol, restart, max_restarts):
    """Right-preconditioned restarted GMRES for a batch of complex systems ``A x_i = b_i``."""
    B, n = b.shape
    k = min(restart, n)
    x = torch.zeros_like(b)
    bnorm = b.norm(dim=1).clamp_min(1e-300)
    tiny = torch.finfo(torch.float64).tiny
    for _ in range(max_restarts):
        r = b - matvec(x)
        beta = r.norm(dim=1)
        if bool((beta <= tol * bnorm).all()):
            return x
        V = [r / beta.clamp_min(tiny)[:, None]]
        Z = []
        H = torch.zeros(B, k + 1, k, dtype=b.dtype)
        for j in range(k):
            Z.append(precond(V[j]))
            w = matvec(Z[j])
            for i in range(j + 1):  # modified Gram–Schmidt
                H[:, i, j] = (V[i].conj() * w).sum(1)
                w = w - H[:, i, j, None] * V[i]
            H[:, j + 1, j] = w.norm(dim=1)
            V.append(w / H[:, j + 1, j].abs().clamp_min(tiny)[:, None])
        e1 = torch.zeros(B, k + 1, 1, dtype=b.dtype)
        e1[:, 0, 0] = beta
        y = torch.linalg.lstsq(H, e1).solution.squeeze(-1)  # (B, k)
        x = x + torch.einsum("bk,kbn->bn", y, torch.stack(Z))
    res = float(((b - matvec(x)).norm(dim=1) / bnorm).max())
    if res > 1e3 * tol:
        raise ConvergenceError(
            f"GMRES for the spectral shifted solve stopped at relative residual {res:.2e} "
            f"(tolerance {tol:.0e}); reduce `dt` or use a finite-difference kinetic (fd3/fd5)",
            residual=res,
            iterations=max_restarts * k,
        )
    return x

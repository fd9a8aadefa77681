"""Linear structure a field may declare: ``f(t, x) = A(t) x``.

A system (or any field owner) that defines ``linear_operator(t)`` returning a
:class:`LinearOperator` lets implicit steppers replace Newton by one direct solve of
``(I - a A) z = b`` and lets ``exponential`` apply ``exp(a A)`` exactly.
"""

from __future__ import annotations

import abc

import torch


class LinearOperator(abc.ABC):
    """``A`` acting on batched states ``(batch, *state_shape)``.

    Subclass contract:

    1. ``matvec(x)``: ``A x`` for a batch of states.
    2. ``solve_shifted(a, b)``: ``z`` with ``(I - a A) z = b``; ``a`` a real or complex scalar.
    3. ``expm_apply(a, x)``: ``exp(a A) x`` (default: through ``dense()``).
    4. ``dense()``: the matrix, shape ``(n, n)`` with ``n = prod(state_shape)`` (optional;
       used for the default ``expm_apply`` and for references).
    """

    def __init__(self, state_shape: tuple[int, ...]):
        self.state_shape = tuple(state_shape)

    @abc.abstractmethod
    def matvec(self, x: torch.Tensor) -> torch.Tensor: ...

    @abc.abstractmethod
    def solve_shifted(self, a, b: torch.Tensor) -> torch.Tensor: ...

    def dense(self) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} has no dense form")

    def expm_apply(self, a, x: torch.Tensor) -> torch.Tensor:
        E = expm(_scalar_like(a, self.dense()) * self.dense())
        flat = x.reshape(x.shape[0], -1).to(E.dtype)
        return (flat @ E.T).reshape(x.shape)


def expm(M: torch.Tensor) -> torch.Tensor:
    """Matrix exponential to round-off.

    ``torch.linalg.matrix_exp`` loses up to ~2e-11 in float64 for norms near 0.03 (its Taylor
    degree selection), so constant matrices go through scipy's Padé ``expm`` (Al-Mohy & Higham
    2009); a matrix that carries gradients stays in torch.
    """
    if M.requires_grad:
        return torch.linalg.matrix_exp(M)
    import scipy.linalg

    return torch.from_numpy(scipy.linalg.expm(M.detach().cpu().numpy())).to(M.device)


def _scalar_like(a, ref: torch.Tensor):
    """A scalar in a dtype that can multiply ``ref`` (promoting to complex when needed)."""
    if isinstance(a, torch.Tensor):
        return a.to(torch.promote_types(a.dtype, ref.dtype))
    return a


def _key(a) -> complex:
    return complex(a.item() if isinstance(a, torch.Tensor) else a)


class DenseOperator(LinearOperator):
    """A dense matrix ``A`` of shape ``(n, n)`` on flattened states.

    Factorisations of ``I - a A`` and exponentials ``exp(a A)`` are cached per ``a``, so
    fixed-step runs factorise once.
    """

    def __init__(self, matrix: torch.Tensor, state_shape: tuple[int, ...] | None = None):
        if matrix.dim() != 2 or matrix.shape[0] != matrix.shape[1]:
            raise ValueError(f"`matrix` must be square (n, n), got {tuple(matrix.shape)}")
        super().__init__(state_shape or (matrix.shape[0],))
        self.matrix = matrix
        self._lu: dict[complex, tuple[torch.Tensor, torch.Tensor]] = {}
        self._expm: dict[complex, torch.Tensor] = {}

    def dense(self) -> torch.Tensor:
        return self.matrix

    def matvec(self, x):
        return (x.reshape(x.shape[0], -1) @ self.matrix.T.to(x.dtype)).reshape(x.shape)

    def _factor(self, a, dtype):
        key = _key(a)
        if key not in self._lu:
            if len(self._lu) > 8:  # bounded cache: adaptive runs use many distinct dt
                self._lu.clear()
            A = self.matrix.to(dtype)
            eye = torch.eye(A.shape[0], dtype=dtype, device=A.device)
            self._lu[key] = torch.linalg.lu_factor(eye - _scalar_like(a, A) * A)
        return self._lu[key]

    def solve_shifted(self, a, b):
        dtype = torch.promote_types(b.dtype, self.matrix.dtype)
        if isinstance(a, complex) or (isinstance(a, torch.Tensor) and a.is_complex()):
            dtype = torch.promote_types(dtype, torch.complex128)
        LU, piv = self._factor(a, dtype)
        rhs = b.reshape(b.shape[0], -1).to(dtype).T  # (n, B)
        return torch.linalg.lu_solve(LU, piv, rhs).T.reshape(b.shape)

    def expm_apply(self, a, x):
        key = _key(a)
        if key not in self._expm:
            if len(self._expm) > 8:
                self._expm.clear()
            self._expm[key] = expm(_scalar_like(a, self.matrix) * self.matrix)
        E = self._expm[key]
        dtype = torch.promote_types(x.dtype, E.dtype)
        return (x.reshape(x.shape[0], -1).to(dtype) @ E.T.to(dtype)).reshape(x.shape)


class DiagonalOperator(LinearOperator):
    """Elementwise ``A x = lam * x``; ``lam`` broadcasts against ``(batch, *state_shape)``.

    With a per-sample ``lam`` of shape ``(batch, 1)`` it evaluates a family of scalar test
    equations ``y' = λ y`` in one call (used to measure stability functions).
    """

    def __init__(self, lam: torch.Tensor, state_shape: tuple[int, ...]):
        super().__init__(state_shape)
        self.lam = lam

    def matvec(self, x):
        return self.lam * x

    def solve_shifted(self, a, b):
        return b / (1 - a * self.lam)

    def expm_apply(self, a, x):
        return torch.exp(a * self.lam) * x

"""Polynomial fields: ``g(z) = W·φ(z)`` with ``φ`` every monomial of degree ≤ ``degree``.

As the block of a :class:`~physres.models.ResNetEmulator` this is next-generation reservoir
computing (Gauthier et al. 2021, Nat. Commun. 12, 5564) written as a residual step
``z + W·φ(z)``: the flow map of a polynomial field over a short ``dt`` is, to high order in
``dt``, itself a low-degree polynomial of the state (its Taylor series in ``dt`` has polynomial
coefficients), and a model linear in ``W`` is fitted exactly by linear least squares
(:func:`physres.training.fit` does so automatically). As the field of a
:class:`~physres.models.NeuralODE`, ``degree=2`` spans every quadratic field (Lorenz-63 and -96
among them), in the spirit of SINDy (Brunton et al. 2016).

``stencil=(lo, hi)`` (states ``(n,)`` on a periodic ring) makes the field local and
translation-equivariant: site ``i`` sees ``z[i+lo .. i+hi]`` and every site shares one weight
vector, so the feature count depends on the stencil, not on ``n``.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import nn

from .. import _checks
from .base import LearnedField, real_dtype_arg, register, state_shape_arg


@register("poly")
class PolynomialField(LearnedField):
    """``g(z) = W·φ(z)``: a linear map of every monomial of the state up to ``degree``.

    Parameters
    ----------
    state_shape : tuple of int (real states only)
    degree : int, highest total degree of the monomials (1 = affine)
    stencil : (int, int), optional; for ``state_shape = (n,)``: local periodic features
        ``z[i+lo] .. z[i+hi]`` with weights shared by every site
    dtype : torch.float32 or torch.float64
    width, layers, activation : accepted and ignored (so generic builders can pass them)

    Attributes
    ----------
    weight : Parameter, shape (n_out, n_features); zero at start (a residual block starts as
        the identity map). ``n_out`` is the state size, or 1 with a stencil.
    """

    def __init__(
        self,
        state_shape,
        *,
        complex_state: bool = False,
        degree: int = 2,
        stencil: tuple[int, int] | list[int] | None = None,
        dtype: torch.dtype = torch.float64,
        width: int | None = None,
        layers: int | None = None,
        activation: str | None = None,
    ):
        super().__init__()
        self.state_shape = state_shape_arg(state_shape)
        if complex_state:
            raise ValueError("`complex_state`: the polynomial field takes real states only")
        self.complex_state = False
        self.degree = _checks.positive_int("degree", degree)
        dtype = real_dtype_arg(dtype)
        n = math.prod(self.state_shape)
        if stencil is not None:
            if len(self.state_shape) != 1:
                raise ValueError(f"`stencil` needs a state of shape (n,), got {self.state_shape}")
            lo, hi = (int(s) for s in stencil)
            if lo > hi or hi - lo + 1 > n:
                raise ValueError(
                    f"`stencil` must be (lo, hi) with lo <= hi spanning at most "
                    f"{n} sites, got {stencil!r}"
                )
            self.stencil = (lo, hi)
            self.register_buffer("offsets", torch.arange(lo, hi + 1), persistent=False)
            m, n_out = hi - lo + 1, 1
        else:
            self.stencil = None
            m, n_out = n, n
        # monomials of degree <= d of (1, z_1..z_m): index 0 is the constant 1
        combos = list(itertools.combinations_with_replacement(range(m + 1), self.degree))
        self.register_buffer("index", torch.tensor(combos, dtype=torch.long), persistent=False)
        self.n_features = len(combos)
        self.weight = nn.Parameter(torch.zeros(n_out, self.n_features, dtype=dtype))

    def features(self, z: torch.Tensor) -> torch.Tensor:
        """``φ(z)``: (batch, n_features), or (batch, n, n_features) with a stencil."""
        batch = z.shape[0]
        h = z.reshape(batch, -1)
        if self.stencil is not None:
            n = h.shape[1]
            sites = (torch.arange(n, device=h.device)[:, None] + self.offsets.to(h.device)) % n
            h = h[:, sites]  # (B, n, m)
        h = torch.cat([torch.ones_like(h[..., :1]), h], dim=-1)  # (..., m + 1)
        out = h[..., self.index[:, 0]]
        for k in range(1, self.degree):
            out = out * h[..., self.index[:, k]]
        return out

    def forward(self, t, z: torch.Tensor) -> torch.Tensor:
        phi = self.features(z.to(self.weight.dtype))
        if self.stencil is not None:
            return (phi @ self.weight[0]).reshape(z.shape)
        return (phi @ self.weight.T).reshape(z.shape)

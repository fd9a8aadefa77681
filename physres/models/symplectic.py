"""Symplectic emulator: a learned step map of canonical states that is exactly symplectic.

The step is a composition of shears, each the gradient of a scalar potential, as in the
G- and LA-SympNets of Jin et al. (2020, "SympNets: intrinsic structure-preserving symplectic
networks", Neural Networks 132):

* gradient modules ``p ← p + ∇V(q)``, ``q ← q + ∇T(p)`` with one-hidden-layer potentials
  ``V(q) = c·Σᵢ aᵢ S(Kᵢ·u + bᵢ)``, ``u = (q − μ_q)/σ_q``, ``S' = tanh``, so
  ``∇V(q) = c·σ_q⁻¹ ⊙ Kᵀ(a ⊙ tanh(K u + b))``;
* linear modules ``p ← p + c·σ_q⁻¹ ⊙ S u`` and ``q ← q + c·σ_p⁻¹ ⊙ S u`` with ``S`` symmetric
  (the gradient of ``c·uᵀSu/2``; here added to the gradient module of the same shear).

A shear ``(q, p) ↦ (q, p + ∇V(q))`` has the Jacobian ``[[I, 0], [∇²V, I]]`` with a symmetric
lower block, so ``JᵀΩJ = Ω`` for any parameters; compositions are symplectic. Because each
increment is the gradient of a potential of the *physical* coordinates, the normalisation
(any per-component mean and std) is only a change of variables inside the potentials and the
step is exactly symplectic in physical units. The factor ``c`` (the geometric mean over the
degrees of freedom of ``σ_q,k·σ_p,k``) sets the increments' size: ``Δp ~ σ_p``, ``Δq ~ σ_q``
(exactly those scales for one degree of freedom).

An exactly symplectic map near the identity is the time-``dt`` flow of a modified Hamiltonian
(backward error analysis; Hairer, Lubich & Wanner 2006, §IX.3), so the learned dynamics has a
conserved energy close to the true one: energy errors stay bounded instead of drifting.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .. import _checks
from .base import LearnedStepper, real_dtype_arg, register


@register("symplectic")
class SymplecticEmulator(LearnedStepper):
    """Learned symplectic step ``(q, p) ↦ Φ_θ(q, p)`` (a SympNet), trained at a fixed ``dt``.

    The flattened state splits in halves, positions ``q`` then momenta ``p`` (as for
    :class:`~physres.steppers.Leapfrog`): ``(batch, 2)`` for one degree of freedom. One block
    is a p-shear then a q-shear, each by the gradient of its own potential (the
    one-hidden-layer term plus, with ``linear``, the quadratic ``uᵀSu/2``); the step applies
    ``depth`` blocks. Parameters start so that the step is the identity plus a small
    gradient shear. The arithmetic runs in the state's dtype (parameters are cast to it).

    Parameters
    ----------
    state_shape : tuple of int, with an even number of components
    complex_state : bool, must be False (accepted for a uniform model interface)
    width : int, hidden units ``m`` of each gradient module's potential
    depth : int, blocks per step
    linear : bool, include the linear (symmetric-matrix) shears in each block
    init_scale : float, scale of the initial output weights ``a``
    dt : float, the training step (the model steps only at this dt)
    dtype : torch.float32 or torch.float64, the parameters' dtype
    """

    fixed_dt = True

    def __init__(
        self,
        state_shape,
        *,
        complex_state: bool = False,
        width: int = 32,
        depth: int = 2,
        linear: bool = True,
        init_scale: float = 0.01,
        dt: float | None = None,
        dtype: torch.dtype = torch.float64,
    ):
        if complex_state:
            raise ValueError(
                "`complex_state` must be False: a symplectic emulator steps real "
                "canonical coordinates (q, p)"
            )
        super().__init__(state_shape, dt=dt)
        size = math.prod(self.state_shape)
        if size % 2:
            raise ValueError(
                f"`state_shape` {self.state_shape} has {size} components; a "
                "symplectic emulator needs canonical pairs (q, p): an even number"
            )
        self.n = size // 2
        self.width = _checks.positive_int("width", width)
        self.depth = _checks.positive_int("depth", depth)
        self.linear = bool(linear)
        dtype = real_dtype_arg(dtype)
        n, m, blocks = self.n, self.width, 2 * self.depth  # a p- and a q-module per block
        # gradient modules: K (blocks, m, n), b (blocks, m), a (blocks, m)
        self.K = nn.Parameter(torch.randn(blocks, m, n, dtype=dtype) / math.sqrt(n))
        self.b = nn.Parameter(torch.randn(blocks, m, dtype=dtype))
        self.a = nn.Parameter(
            float(init_scale) * torch.randn(blocks, m, dtype=dtype) / math.sqrt(m)
        )
        # linear modules: S = (A + Aᵀ)/2, zero at start
        self.A = nn.Parameter(torch.zeros(blocks, n, n, dtype=dtype)) if self.linear else None

    def _weights(self, x):
        """:meth:`_folded`, cached while no gradient is recorded (rollouts). The cache holds
        the tensors it was computed from and is reused only for the same objects at the same
        version, storage, dtype and device (in-place updates and swapped parameters, e.g. by
        ``torch.func.functional_call``, invalidate it)."""
        if torch.is_grad_enabled():
            return self._folded(x)
        tensors = (self.K, self.b, self.a, self.A, self.norm_mean, self.norm_std)
        state = tuple(
            None if t is None else (t._version, t.data_ptr(), t.dtype, t.device) for t in tensors
        ) + (x.dtype, x.device)
        cache = self.__dict__.get("_cache")
        if (
            cache is None
            or cache[2] != state
            or any(a is not b for a, b in zip(cache[0], tensors, strict=True))
        ):
            cache = (tensors, self._folded(x), state)
            self.__dict__["_cache"] = cache
        return cache[1]

    def _folded(self, x):
        """The modules' weights in physical coordinates (normalisation folded in), each
        ``(2·depth, ...)``: ``inc_j(s) = tanh(s K̃ⱼᵀ + b̃ⱼ) Wⱼ + s S̃ⱼ + dⱼ``, with
        ``K̃ = K/σ``, ``b̃ = b − K̃μ``, ``W = c·a ⊙ K̃``, ``S̃ = c·S/(σσᵀ)``, ``d = −μS̃``
        (``σ, μ`` of the module's source half), so the increment is ``∇`` of
        ``c·[Σᵢ aᵢ log cosh(Kᵢ·u + bᵢ) + uᵀSu/2]`` at ``u = (s − μ)/σ``."""
        mean, std = self._stats(x)
        mean, std = mean.reshape(2, self.n), std.reshape(2, self.n)
        c = torch.exp(torch.log(std[0] * std[1]).mean())  # area unit: Π(σ_q σ_p)^(1/n)
        side = torch.arange(2 * self.depth, device=x.device) % 2  # 0: p-kick, 1: q-drift
        mu, sd = mean[side], std[side]  # (2D, n)
        K = self.K.to(x.dtype) / sd[:, None, :]  # (2D, m, n)
        b = self.b.to(x.dtype) - torch.einsum("jmn,jn->jm", K, mu)
        W = (c * self.a.to(x.dtype))[:, :, None] * K  # (2D, m, n)
        if self.A is None:
            return K, b, W, None, None
        A = self.A.to(x.dtype)
        S = c * (A + A.transpose(1, 2)) / 2 / (sd[:, :, None] * sd[:, None, :])  # (2D, n, n)
        return K, b, W, S, -torch.einsum("jn,jnk->jk", mu, S)

    def _step(self, x, t, dt):
        shape = x.shape
        y = x.reshape(shape[0], 2 * self.n)
        q, p = y[:, : self.n], y[:, self.n :]
        K, b, W, S, d = self._weights(x)
        for j in range(2 * self.depth):
            self.nfev += 1
            src = q if j % 2 == 0 else p
            h = torch.tanh(torch.addmm(b[j], src, K[j].T))  # (B, m)
            if S is None:
                inc = h @ W[j]  # (B, n)
            else:
                inc = torch.addmm(torch.addmm(d[j], src, S[j]), h, W[j])
            if j % 2 == 0:
                p = p + inc
            else:
                q = q + inc
        return torch.cat([q, p], dim=1).reshape(shape)

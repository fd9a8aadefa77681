"""Chain-graph emulator: a residual network whose skips follow the chain and its staples.

Each block is an E(n)-equivariant graph layer (Satorras, Hoogeboom & Welling 2021, EGNN) on the
bead graph — bonds ``|i − j| = 1``, next neighbours ``|i − j| = 2``, staples, and optionally all
pairs closer than ``cutoff``:

    m_ij = φ_e(h_i, h_j, r_ij, type_ij)
    x_i ← x_i + Σ_j (x_i − x_j)/(r_ij + 1) · φ_x(m_ij)        (the residual skip in positions)
    h_i ← h_i + φ_h(h_i, Σ_j m_ij)

so one step ``x_{n+1} = x_n + Σ_blocks Δx`` moves bead i from its bonded neighbours and staple
partners only. Relative vectors make it translation invariant; scalar messages times
``x_i − x_j`` make it rotation equivariant. ``use_staples=False`` drops the staple edges (the
same network without long-range skips). With ``temperature > 0`` evaluation adds Euler–Maruyama
noise ``sqrt(2kT·dt/γ)·ξ`` to the learned drift, so the emulator samples at temperature.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .. import _checks
from .base import LearnedStepper, real_dtype_arg, register, state_shape_arg

EDGE_TYPES = ("bond", "next", "staple", "near")


def _mlp(n_in, width, n_out, act=nn.SiLU):
    return nn.Sequential(nn.Linear(n_in, width), act(), nn.Linear(width, n_out))


class _EGNNBlock(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.edge = nn.Sequential(_mlp(2 * width + 1 + len(EDGE_TYPES), width, width), nn.SiLU())
        self.coord = _mlp(width, width, 1)
        self.node = _mlp(2 * width, width, width)
        with torch.no_grad():  # start near the identity step
            self.coord[-1].weight.mul_(1e-2)
            self.coord[-1].bias.zero_()

    def forward(self, x, h, src, dst, types):
        d = x[:, dst] - x[:, src]  # (B, E, 3): x_i − x_j for edge j → i
        r = torch.linalg.vector_norm(d, dim=-1, keepdim=True)
        b = x.shape[0]
        feats = torch.cat([h[:, dst], h[:, src], r, types.expand(b, -1, -1)], dim=-1)
        m = self.edge(feats)  # (B, E, W)
        dx = torch.zeros_like(x).index_add_(1, dst, d / (r + 1.0) * self.coord(m))
        agg = torch.zeros_like(h).index_add_(1, dst, m)
        return x + dx, h + self.node(torch.cat([h, agg], dim=-1))


@register("chain_graph")
class ChainGraphEmulator(LearnedStepper):
    """Learned step of a bead chain (state (n_beads, 3)) by message passing along bonds and
    staples.

    Parameters
    ----------
    state_shape : ``(n_beads, 3)``
    staples : sequence of ``(i, j)`` (or ``(i, j, k, r0)``, the ``bead_chain`` form)
    use_staples : bool, include the staple edges
    cutoff : float, optional, also connect all pairs closer than this (recomputed each block)
    width : int, node and message features; depth : int, residual (EGNN) blocks per step
    temperature, friction : Euler–Maruyama noise added in evaluation mode (0: deterministic)
    seed : int, seed of that noise
    dt : float, the training step (the model steps only at this dt)
    dtype : parameter dtype
    """

    fixed_dt = True

    def __init__(self, state_shape, *, staples=(), use_staples: bool = True,
                 cutoff: float | None = None, width: int = 32, depth: int = 3,
                 temperature: float = 0.0, friction: float = 1.0, seed: int = 0,
                 dt: float | None = None, dtype: torch.dtype = torch.float32):
        shape = state_shape_arg(state_shape)
        if len(shape) != 2 or shape[1] != 3:
            raise ValueError(f"`state_shape` must be (n_beads, 3), got {shape}")
        super().__init__(shape, dt=dt)
        n = shape[0]
        self.use_staples = bool(use_staples)
        self.cutoff = None if cutoff is None else _checks.positive("cutoff", cutoff)
        self.temperature = _checks.positive("temperature", temperature, allow_zero=True)
        self.friction = _checks.positive("friction", friction)
        self.seed = _checks.positive_int("seed", seed, allow_zero=True)
        self._generator = None
        width = _checks.positive_int("width", width)
        depth = _checks.positive_int("depth", depth)
        dtype = real_dtype_arg(dtype)
        pairs = {(i, i + 1): 0 for i in range(n - 1)} | {(i, i + 2): 1 for i in range(n - 2)}
        for s in staples if use_staples else ():
            i, j = sorted((int(s[0]), int(s[1])))
            if i < 0 or j >= n or j - i < 1:
                raise ValueError(f"`staples` entry {tuple(s)!r} is out of range for {n} beads")
            pairs[(i, j)] = 2
        ij = torch.tensor(list(pairs), dtype=torch.long)
        kinds = torch.tensor(list(pairs.values()), dtype=torch.long)
        self.register_buffer("src", torch.cat([ij[:, 0], ij[:, 1]]), persistent=False)
        self.register_buffer("dst", torch.cat([ij[:, 1], ij[:, 0]]), persistent=False)
        types = nn.functional.one_hot(torch.cat([kinds, kinds]), len(EDGE_TYPES))
        self.register_buffer("types", types.to(dtype).unsqueeze(0), persistent=False)
        self.embed = nn.Embedding(n, width, dtype=dtype)
        self.blocks = nn.ModuleList(_EGNNBlock(width) for _ in range(depth)).to(dtype)

    def _edges(self, x):
        if self.cutoff is None:
            return self.src, self.dst, self.types
        with torch.no_grad():  # pairs within the cutoff in any sample of the batch
            d = torch.cdist(x, x).amin(0)
            near = torch.nonzero(torch.triu(d < self.cutoff, diagonal=3))
        n_types = len(EDGE_TYPES)
        near_type = torch.zeros(1, 2 * len(near), n_types, dtype=self.types.dtype,
                                device=x.device)
        near_type[..., 3] = 1.0
        return (torch.cat([self.src, near[:, 0], near[:, 1]]),
                torch.cat([self.dst, near[:, 1], near[:, 0]]),
                torch.cat([self.types, near_type], dim=1))

    def _step(self, x, t, dt):
        self.check_step_size(dt)
        y = x.to(self.net_dtype)
        h = self.embed.weight.unsqueeze(0).expand(x.shape[0], -1, -1)
        for block in self.blocks:
            self.nfev += 1
            y, h = block(y, h, *self._edges(y))
        out = y.to(x.dtype)
        if self.temperature > 0 and not self.training:
            scale = math.sqrt(2.0 * self.temperature * float(dt) / self.friction)
            out = out + scale * self._noise(out)
        return out

    def _noise(self, like):
        if self._generator is None or self._generator.device != like.device:
            self._generator = torch.Generator(device=like.device).manual_seed(self.seed)
        return torch.randn(like.shape, generator=self._generator, dtype=like.dtype,
                           device=like.device)

    def reseed(self, seed: int | None = None) -> None:
        """Restart the noise stream (from ``seed`` or the constructor's)."""
        if seed is not None:
            self.seed = _checks.positive_int("seed", seed, allow_zero=True)
        self._generator = None

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

``ChainForceEmulator`` keeps the form of the chain's own force field instead: learned pair laws
on the same graph (plus all pairs within ``cutoff``) and learned bending laws at the angles,
integrated in Euler sub-steps.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .. import _checks
from .base import LearnedStepper, real_dtype_arg, register, state_shape_arg

EDGE_TYPES = ("bond", "next", "staple", "near")
SCHEMES = ("euler", "chebyshev")
CHEBYSHEV_DAMPING = 0.05  # ε of the damped first-order Runge–Kutta–Chebyshev stages


def _chebyshev_stages(s: int, eps: float = CHEBYSHEV_DAMPING) -> list[tuple[float, float, float]]:
    """Coefficients ``(μ_j, ν_j, μ̃_j)`` of the damped first-order Runge–Kutta–Chebyshev step
    with ``s`` stages (Verwer, Sommeijer & Hundsdorfer 2004): ``Y_1 = Y_0 + μ̃_1 F(Y_0)``,
    ``Y_j = μ_j Y_{j−1} + ν_j Y_{j−2} + μ̃_j F(Y_{j−1})``, for a drift ``F`` per whole step.
    The step is first order with stability polynomial ``T_s(w0 + w1 z)/T_s(w0)``, bounded by 1
    on ``z ∈ [−(2 − 4ε/3)s², 0]`` (``s`` Euler sub-steps: ``[−2s, 0]``); ``s = 1`` is Euler."""
    w0 = 1.0 + eps / s**2
    t = [1.0, w0]  # T_j(w0)
    dt = [0.0, 1.0]  # T_j'(w0)
    for _ in range(2, s + 1):
        t.append(2.0 * w0 * t[-1] - t[-2])
        dt.append(2.0 * t[-2] + 2.0 * w0 * dt[-1] - dt[-2])
    w1 = t[s] / dt[s]
    b = [1.0 / v for v in t]
    stages = [(0.0, 0.0, w1 * b[1])]
    for j in range(2, s + 1):
        stages.append((2.0 * w0 * b[j] / b[j - 1], -b[j] / b[j - 2], 2.0 * w1 * b[j] / b[j - 1]))
    return stages


def _mlp(n_in, width, n_out, act=nn.SiLU):
    return nn.Sequential(nn.Linear(n_in, width), act(), nn.Linear(width, n_out))


class _EGNNBlock(nn.Module):
    def __init__(self, width: int, n_radial: int, r_max: float):
        super().__init__()
        self.n_radial = n_radial
        if n_radial:  # Gaussian radial basis on [0.5, r_max] (Schütt et al. 2017, SchNet)
            self.register_buffer("centres", torch.linspace(0.5, r_max, n_radial), persistent=False)
            self.gamma = (n_radial / (r_max - 0.5)) ** 2
        n_in = 2 * width + 1 + n_radial + len(EDGE_TYPES)
        self.edge = nn.Sequential(_mlp(n_in, width, width), nn.SiLU())
        self.coord = _mlp(width, width, 1)
        self.node = _mlp(2 * width, width, width)
        with torch.no_grad():  # start near the identity step
            self.coord[-1].weight.mul_(1e-2)
            self.coord[-1].bias.zero_()

    def forward(self, x, h, src, dst, types):
        d = x[:, dst] - x[:, src]  # (B, E, 3): x_i − x_j for edge j → i
        r = torch.linalg.vector_norm(d, dim=-1, keepdim=True)
        b = x.shape[0]
        parts = [h[:, dst], h[:, src], r]
        if self.n_radial:
            parts.append(torch.exp(-self.gamma * (r - self.centres.to(r.dtype)) ** 2))
        parts.append(types.expand(b, -1, -1))
        m = self.edge(torch.cat(parts, dim=-1))  # (B, E, W)
        dx = torch.zeros_like(x).index_add_(1, dst, d / (r + 1.0) * self.coord(m))
        agg = torch.zeros_like(h).index_add_(1, dst, m)
        return x + dx, h + self.node(torch.cat([h, agg], dim=-1))


class _ChainEmulator(LearnedStepper):
    """What both chain emulators share: at inference with ``temperature > 0``, each step adds
    overdamped Langevin noise of std √(2·T·dt/γ), drawn from a seeded stream."""

    def __init__(
        self,
        state_shape,
        *,
        staples,
        use_staples: bool,
        cutoff: float | None,
        temperature: float,
        friction: float,
        seed: int,
        dt: float | None,
    ):
        shape = state_shape_arg(state_shape)
        if len(shape) != 2 or shape[1] != 3:
            raise ValueError(f"`state_shape` must be (n_beads, 3), got {shape}")
        super().__init__(shape, dt=dt)
        self.use_staples = bool(use_staples)
        self.cutoff = None if cutoff is None else _checks.positive("cutoff", cutoff)
        self.temperature = _checks.positive("temperature", temperature, allow_zero=True)
        self.friction = _checks.positive("friction", friction)
        self.seed = _checks.positive_int("seed", seed, allow_zero=True)
        self._generator = None

    def _edge_pairs(self, staples, far: bool):
        """Edges ``(i, j)`` (i < j) and their kinds: bonds 0, next neighbours 1, staples 2 (when
        ``use_staples``) and, with ``far``, every other pair 3. Returns (ij (E, 2), kinds (E,))."""
        n = self.state_shape[0]
        pairs = {(i, i + 1): 0 for i in range(n - 1)} | {(i, i + 2): 1 for i in range(n - 2)}
        if far:
            pairs |= {(i, j): 3 for i in range(n) for j in range(i + 3, n)}
        for s in staples if self.use_staples else ():
            i, j = sorted((int(s[0]), int(s[1])))
            if i < 0 or j >= n or j - i < 1:
                raise ValueError(f"`staples` entry {tuple(s)!r} is out of range for {n} beads")
            pairs[(i, j)] = 2
        return (
            torch.tensor(list(pairs), dtype=torch.long),
            torch.tensor(list(pairs.values()), dtype=torch.long),
        )

    def _with_noise(self, out, dt):
        if self.temperature > 0 and not self.training:
            scale = math.sqrt(2.0 * self.temperature * float(dt) / self.friction)
            out = out + scale * self._noise(out)
        return out

    def _noise(self, like):
        if self._generator is None or self._generator.device != like.device:
            self._generator = torch.Generator(device=like.device).manual_seed(self.seed)
        return torch.randn(
            like.shape, generator=self._generator, dtype=like.dtype, device=like.device
        )

    def reseed(self, seed: int | None = None) -> None:
        """Restart the noise stream (from ``seed`` or the constructor's)."""
        if seed is not None:
            self.seed = _checks.positive_int("seed", seed, allow_zero=True)
        self._generator = None


@register("chain_graph")
class ChainGraphEmulator(_ChainEmulator):
    """Learned step of a bead chain (state (n_beads, 3)) by message passing along bonds and
    staples.

    Parameters
    ----------
    state_shape : ``(n_beads, 3)``
    staples : sequence of ``(i, j)`` (or ``(i, j, k, r0)``, the ``bead_chain`` form)
    use_staples : bool, include the staple edges
    cutoff : float, optional, also connect all pairs closer than this (recomputed each block)
    width : int, node and message features; depth : int, residual (EGNN) blocks per step
    n_radial : int, Gaussian radial-basis features of each edge length on [0.5, ``r_max``]
        (0: the length alone); ``r_max`` defaults to ``cutoff`` (else 3)
    temperature, friction : Euler–Maruyama noise added in evaluation mode (0: deterministic)
    seed : int, seed of that noise
    dt : float, the training step (the model steps only at this dt)
    dtype : parameter dtype
    """

    fixed_dt = True

    def __init__(
        self,
        state_shape,
        *,
        staples=(),
        use_staples: bool = True,
        cutoff: float | None = None,
        width: int = 32,
        depth: int = 3,
        n_radial: int = 0,
        r_max: float | None = None,
        temperature: float = 0.0,
        friction: float = 1.0,
        seed: int = 0,
        dt: float | None = None,
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__(
            state_shape,
            staples=staples,
            use_staples=use_staples,
            cutoff=cutoff,
            temperature=temperature,
            friction=friction,
            seed=seed,
            dt=dt,
        )
        width = _checks.positive_int("width", width)
        depth = _checks.positive_int("depth", depth)
        dtype = real_dtype_arg(dtype)
        ij, kinds = self._edge_pairs(staples, far=False)
        self.register_buffer("src", torch.cat([ij[:, 0], ij[:, 1]]), persistent=False)
        self.register_buffer("dst", torch.cat([ij[:, 1], ij[:, 0]]), persistent=False)
        types = nn.functional.one_hot(torch.cat([kinds, kinds]), len(EDGE_TYPES))
        self.register_buffer("types", types.to(dtype).unsqueeze(0), persistent=False)
        self.embed = nn.Embedding(self.state_shape[0], width, dtype=dtype)
        n_radial = _checks.positive_int("n_radial", n_radial, allow_zero=True)
        r_max = _checks.positive("r_max", r_max if r_max is not None else (cutoff or 3.0))
        if n_radial and r_max <= 0.5:
            raise ValueError(f"`r_max` must be > 0.5 (the first radial centre), got {r_max:g}")
        self.blocks = nn.ModuleList(_EGNNBlock(width, n_radial, r_max) for _ in range(depth)).to(
            dtype
        )

    def _edges(self, x):
        if self.cutoff is None:
            return self.src, self.dst, self.types
        with torch.no_grad():  # pairs within the cutoff in any sample of the batch
            d = torch.cdist(x, x).amin(0)
            near = torch.nonzero(torch.triu(d < self.cutoff, diagonal=3))
        n_types = len(EDGE_TYPES)
        near_type = torch.zeros(1, 2 * len(near), n_types, dtype=self.types.dtype, device=x.device)
        near_type[..., 3] = 1.0
        return (
            torch.cat([self.src, near[:, 0], near[:, 1]]),
            torch.cat([self.dst, near[:, 1], near[:, 0]]),
            torch.cat([self.types, near_type], dim=1),
        )

    def _step(self, x, t, dt):
        self.check_step_size(dt)
        y = x.to(self.net_dtype)
        h = self.embed.weight.unsqueeze(0).expand(x.shape[0], -1, -1)
        for block in self.blocks:
            self.nfev += 1
            y, h = block(y, h, *self._edges(y))
        return self._with_noise(y.to(x.dtype), dt)


@register("chain_force")
class ChainForceEmulator(_ChainEmulator):
    """Learned drift of a bead chain (state (n_beads, 3)): pair forces on the bead graph and
    bending forces at its angles, integrated in ``substeps`` explicit Euler sub-steps per step
    (or, with ``scheme="chebyshev"``, the stages of one Runge–Kutta–Chebyshev step).

    Each sub-step moves every bead along its edges (bonds ``|i − j| = 1``, next neighbours
    ``|i − j| = 2``, staples, and with ``cutoff`` every other pair ``|i − j| ≥ 3``) and, with
    ``angles``, along the gradient of the cosine of each bond angle θ_i (at beads 1 … n − 2):

        x ← x + (1/K) [Σ_edges φ_ij(r_ij) · s(r_ij) · (x_j − x_i)  −  Σ_i g_i(cos θ_i) ∇cos θ_i]

    with ``K = substeps`` and ``s`` a smooth envelope ``½(1 + cos(π r/cutoff))`` that switches
    the far pairs off at the cutoff (1 on the chain and staple edges). This is the form of the
    true field, a sum of radial pair forces (bonds, staples, Gō contacts, WCA) and bending
    terms ``½k(cos θ − cos θ0)²``: ``φ`` plays ``u'(r)/r`` and ``g`` plays ``dU/dcos θ``, times
    the step (:meth:`pair_law`, :meth:`angle_law`). Each law is a small MLP of the Gaussian
    radial (angular) basis, conditioned on learned bead embeddings ``e_i, e_j`` and the edge
    type, plus, with ``tables``, the edge's (angle's) own linear combination of that basis: a
    tabulated law per pair, as a Gō model gives every native contact its own potential. The
    tables are what make the laws learnable in a few hundred optimiser steps (the shared MLP
    alone has to encode pair identity through the embeddings).

    Pair forces are equal and opposite and bending forces come from rotation-invariant
    cosines, so the drift carries no net force or torque: the centre of mass is kept exactly,
    the step is rotation equivariant and translation invariant. ``use_staples=False`` drops
    the staple edges (a staple's partners then interact only as far pairs, within ``cutoff``).
    With ``temperature > 0`` evaluation adds Euler–Maruyama noise ``sqrt(2kT·dt/γ)·ξ``.

    Parameters
    ----------
    state_shape : ``(n_beads, 3)``
    staples : sequence of ``(i, j)`` (or ``(i, j, k, r0)``)
    use_staples : bool
    cutoff : float, optional, range of the far pairs (None: chain and staple edges only)
    width : int, embedding and hidden width; n_radial : int, Gaussian features of each edge
        length on [0.5, ``cutoff`` or 3] (and of each angle's cosine on [−1, 1])
    substeps : int, drift evaluations (sub-steps) per step
    scheme : ``"euler"`` (``substeps`` explicit Euler sub-steps of 1/K, stable while every
        mode of the drift per step has ``λ ≥ −2K``) or ``"chebyshev"`` (the ``substeps``
        evaluations as the stages of one damped first-order Runge–Kutta–Chebyshev step:
        the same cost, stable for ``λ ≥ −(2 − 4ε/3)K²``, ε = 0.05, e.g. −31 instead of −8 at
        K = 4, with a larger second-order error)
    angles : bool, the learned bending terms (False: pair forces only, bending seen through
        the next-neighbour distance)
    tables : bool, each edge's and angle's own linear law beside the shared MLP
    temperature, friction, seed : evaluation-mode noise (0: deterministic)
    dt : float, the training step; dtype : parameter dtype
    """

    fixed_dt = True

    def __init__(
        self,
        state_shape,
        *,
        staples=(),
        use_staples: bool = True,
        cutoff: float | None = 2.5,
        width: int = 32,
        n_radial: int = 16,
        substeps: int = 4,
        scheme: str = "euler",
        angles: bool = True,
        tables: bool = True,
        temperature: float = 0.0,
        friction: float = 1.0,
        seed: int = 0,
        dt: float | None = None,
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__(
            state_shape,
            staples=staples,
            use_staples=use_staples,
            cutoff=cutoff,
            temperature=temperature,
            friction=friction,
            seed=seed,
            dt=dt,
        )
        self.substeps = _checks.positive_int("substeps", substeps)
        if scheme not in SCHEMES:
            raise ValueError(f"`scheme` must be one of {SCHEMES}, got {scheme!r}")
        self.scheme = scheme
        self._stages = _chebyshev_stages(self.substeps) if scheme == "chebyshev" else None
        width = _checks.positive_int("width", width)
        n_radial = _checks.positive_int("n_radial", n_radial)
        dtype = real_dtype_arg(dtype)
        ij, kinds = self._edge_pairs(staples, far=self.cutoff is not None)
        self.register_buffer("src", ij[:, 0].clone(), persistent=False)
        self.register_buffer("dst", ij[:, 1].clone(), persistent=False)
        self.register_buffer("far", (kinds == 3).to(dtype), persistent=False)
        self.register_buffer(
            "types", nn.functional.one_hot(kinds, len(EDGE_TYPES)).to(dtype), persistent=False
        )
        r_max = self.cutoff or 3.0
        self.register_buffer(
            "centres", torch.linspace(0.5, r_max, n_radial, dtype=dtype), persistent=False
        )
        self.gamma = (n_radial / (r_max - 0.5)) ** 2 if r_max > 0.5 else 1.0
        self.embed = nn.Embedding(self.state_shape[0], width, dtype=dtype)
        self.pair = nn.Linear(2 * width + len(EDGE_TYPES), width, dtype=dtype)
        self.radial = nn.Linear(n_radial + 1, width, bias=False, dtype=dtype)
        self.head = nn.Sequential(
            nn.SiLU(),
            nn.Linear(width, width, dtype=dtype),
            nn.SiLU(),
            nn.Linear(width, 1, dtype=dtype),
        )
        with torch.no_grad():  # start near the identity step
            self.head[-1].weight.mul_(1e-2)
            self.head[-1].bias.zero_()
        self.angles = bool(angles)
        # each edge's and angle's own law, linear in the radial (angular) basis
        self.table = nn.Parameter(torch.zeros(len(ij), n_radial, dtype=dtype)) if tables else None
        self.angle_table = (
            nn.Parameter(torch.zeros(self.state_shape[0] - 2, n_radial, dtype=dtype))
            if tables and self.angles
            else None
        )
        if self.angles:  # dU/dcos θ at each middle bead 1 … n − 2
            n_ang = n_radial
            self.register_buffer(
                "angle_centres", torch.linspace(-1.0, 1.0, n_ang, dtype=dtype), persistent=False
            )
            self.angle_gamma = ((n_ang - 1) / 2.0) ** 2
            self.angle_static = nn.Linear(width, width, dtype=dtype)
            self.angle_radial = nn.Linear(n_ang + 1, width, bias=False, dtype=dtype)
            self.angle_head = nn.Sequential(
                nn.SiLU(),
                nn.Linear(width, width, dtype=dtype),
                nn.SiLU(),
                nn.Linear(width, 1, dtype=dtype),
            )
            with torch.no_grad():
                self.angle_head[-1].weight.mul_(1e-2)
                self.angle_head[-1].bias.zero_()

    def _static(self):
        """Per-edge and per-angle features that do not depend on the positions."""
        e = self.embed.weight
        ei, ej = e[self.src], e[self.dst]
        pair = self.pair(torch.cat([ei + ej, ei * ej, self.types], dim=-1))  # (E, W)
        return pair, self.angle_static(e[1:-1]) if self.angles else None  # (A, W)

    def pair_law(self, r: torch.Tensor, static: torch.Tensor) -> torch.Tensor:
        """Learned pair law ``φ``, (B, E, 1), of the edge lengths ``r`` (B, E, 1): bead i moves
        by ``φ·(x_j − x_i)`` per step (the true ``u'(r)/r`` times the step)."""
        rbf = torch.exp(-self.gamma * (r - self.centres) ** 2)
        out = self.head(static + self.radial(torch.cat([rbf, r], dim=-1)))
        if self.table is not None:
            out = out + (rbf * self.table).sum(-1, keepdim=True)
        return out

    def angle_law(self, c: torch.Tensor, static: torch.Tensor) -> torch.Tensor:
        """Learned bending law ``g``, (B, A, 1), of the cosines ``c`` (B, A, 1) of the angles
        at beads 1 … n − 2: plays ``dU/dcos θ`` times the step."""
        basis = torch.exp(-self.angle_gamma * (c - self.angle_centres) ** 2)
        out = self.angle_head(static + self.angle_radial(torch.cat([basis, c], dim=-1)))
        if self.angle_table is not None:
            out = out + (basis * self.angle_table).sum(-1, keepdim=True)
        return out

    def drift(self, y: torch.Tensor, static=None) -> torch.Tensor:
        """The learned displacement per step, (B, N, 3), at positions ``y`` (B, N, 3): pair
        terms on the edges (equal and opposite) plus, with ``angles``, bending terms."""
        pair, angle = self._static() if static is None else static
        d = y[:, self.dst] - y[:, self.src]  # (B, E, 3): x_j − x_i
        r = torch.linalg.vector_norm(d, dim=-1, keepdim=True)
        phi = self.pair_law(r, pair)  # (B, E, 1)
        if self.cutoff is not None:
            env = 0.5 * (1.0 + torch.cos(torch.pi * (r / self.cutoff).clamp(max=1.0)))
            phi = phi * (1.0 + self.far.unsqueeze(-1) * (env - 1.0))
        f = phi * d
        out = torch.zeros_like(y).index_add_(1, self.src, f).index_add_(1, self.dst, -f)
        return out + self._angle_forces(y, angle) if self.angles else out

    def _step(self, x, t, dt):
        self.check_step_size(dt)
        y = x.to(self.net_dtype)
        static = self._static()
        if self._stages is None:
            for _ in range(self.substeps):
                self.nfev += 1
                y = y + self.drift(y, static) / self.substeps
        else:
            prev = None
            for mu, nu, mu_f in self._stages:
                self.nfev += 1
                f = self.drift(y, static)
                y, prev = (y + mu_f * f if prev is None else mu * y + nu * prev + mu_f * f), y
        return self._with_noise(y.to(x.dtype), dt)

    def _angle_forces(self, y, static):
        """Forces ``−g(cos θ)·∇cos θ`` of the bending terms, (B, N, 3), θ the angle at bead i
        between its bonds. Each triple's three forces sum to zero and come from a
        rotation-invariant scalar, so they carry neither net force nor torque."""
        u = y[:, :-2] - y[:, 1:-1]  # (B, A, 3): to bead i − 1
        v = y[:, 2:] - y[:, 1:-1]  # to bead i + 1
        nu = torch.linalg.vector_norm(u, dim=-1, keepdim=True)
        nv = torch.linalg.vector_norm(v, dim=-1, keepdim=True)
        c = (u * v).sum(-1, keepdim=True) / (nu * nv)  # (B, A, 1)
        g = self.angle_law(c, static)
        fa = -g * (v / (nu * nv) - c * u / nu**2)  # on bead i − 1
        fc = -g * (u / (nu * nv) - c * v / nv**2)  # on bead i + 1
        zero = torch.zeros_like(fa[:, :2])
        return (
            torch.cat([fa, zero], 1)
            + torch.cat([zero, fc], 1)
            - torch.cat([zero[:, :1], fa + fc, zero[:, :1]], 1)
        )

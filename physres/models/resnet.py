"""ResNet emulator: a learned residual step, the network form of a one-step integrator.

In normalised coordinates ``z = (x − μ)/σ`` each of ``depth`` blocks applies

* ``form="residual"``: ``z ← (1 − β)·z + α·g_k(z)`` (``β = 0, α = 1``: the plain ``z + g(z)``),
* ``form="euler"``: ``z ← z + (dt/depth)·f_k(z)`` — forward-Euler substeps of a learned field,

so a ResNet *is* an integrator (E, 2017; Chen et al., 2018). ``tie_weights`` shares one network
across blocks (with ``form="euler"`` the emulator is then ``depth`` Euler substeps of one field).
Stochastic depth (Huang et al., 2016) drops block ``k`` per sample with probability
``p_k = stochastic_depth·k/depth`` during training and rescales kept blocks by ``1/(1 − p_k)``, so
evaluation uses every block unchanged.
"""

from __future__ import annotations

import torch
from torch import nn

from .. import _checks
from .base import LearnedStepper, real_dtype_arg, register
from .fields import build_net


@register("resnet")
class ResNetEmulator(LearnedStepper):
    """Learned residual step ``x_{n+1} = x_n + g_θ(x_n)`` (or ``x_n + dt·f_θ(x_n)``).

    Parameters
    ----------
    state_shape : tuple of int
    complex_state : bool
    net : str or LearnedField
        Block network: ``"mlp"``, ``"conv1d"`` or any registered field (or an instance,
        used for the first block; further untied blocks are built from its config).
    width, layers, activation : hidden size, hidden layers and activation of each block net.
    net_options : dict, extra keyword arguments of the block net (e.g. ``kernel_size``).
    depth : int, residual blocks per step
    tie_weights : bool, one network shared by all blocks
    stochastic_depth : float in [0, 1), drop probability of the last block during training
    form : ``"residual"`` or ``"euler"``
    alpha, beta : scaled residual ``(1 − β)·z + α·g(z)`` (``form="residual"`` only)
    learn_scale : bool, make ``alpha`` and ``beta`` trainable
    dt : float, the training step (``form="residual"`` steps only at this dt)
    dtype : torch.float32 or torch.float64, the parameters' dtype
    """

    def __init__(
        self,
        state_shape,
        *,
        complex_state: bool = False,
        net="mlp",
        width: int = 64,
        layers: int = 2,
        activation: str = "tanh",
        net_options: dict | None = None,
        depth: int = 1,
        tie_weights: bool = False,
        stochastic_depth: float = 0.0,
        form: str = "residual",
        alpha: float = 1.0,
        beta: float = 0.0,
        learn_scale: bool = False,
        dt: float | None = None,
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__(state_shape, complex_state=complex_state, dt=dt)
        if form not in ("residual", "euler"):
            raise ValueError(f"`form` must be 'residual' or 'euler', got {form!r}")
        if form == "euler" and (alpha != 1.0 or beta != 0.0 or learn_scale):
            raise ValueError("`alpha`, `beta` and `learn_scale` apply to form='residual' only")
        self.depth = _checks.positive_int("depth", depth)
        p = float(stochastic_depth)
        if not 0.0 <= p < 1.0:
            raise ValueError(f"`stochastic_depth` must be in [0, 1), got {stochastic_depth!r}")
        dtype = real_dtype_arg(dtype)
        self.form = form
        self.tie_weights = bool(tie_weights)
        self.drop = [p * (k + 1) / self.depth for k in range(self.depth)]
        self.has_field = form == "euler" and (self.tie_weights or self.depth == 1)
        self.fixed_dt = form == "residual"
        options = dict(width=width, layers=layers, activation=activation, **(net_options or {}))
        first = build_net(net, self.state_shape, self.complex_state, dtype, **options)
        blocks = [first]
        if not self.tie_weights:
            for _ in range(self.depth - 1):
                blocks.append(type(first)(**first.config))
        self.blocks = nn.ModuleList(blocks)
        scale = torch.tensor([float(alpha), float(beta)], dtype=dtype)
        if learn_scale:
            self.scale = nn.Parameter(scale)
        else:
            self.register_buffer("scale", scale)

    def _block(self, k: int):
        return self.blocks[0 if self.tie_weights else k]

    def _keep(self, k: int, z: torch.Tensor):
        """Per-sample stochastic-depth factor (training only): 0 or 1/(1 − p_k)."""
        p = self.drop[k]
        if not self.training or p == 0.0:
            return None
        shape = (z.shape[0],) + (1,) * (z.dim() - 1)
        keep = torch.rand(shape, device=z.device) >= p
        return keep.to(z.real.dtype) / (1.0 - p)

    def _step(self, x, t, dt):
        z = self.normalize(x)
        alpha, beta = self.scale.to(z.real.dtype)
        for k in range(self.depth):
            self.nfev += 1
            g = self._block(k)(t, self.to_net(z)).to(z.dtype)
            if self.form == "euler":
                g = g * (float(dt) / self.depth)
            else:
                g = alpha * g
            keep = self._keep(k, z)
            if keep is not None:
                g = g * keep
            z = z + g if self.form == "euler" else (1 - beta) * z + g
        return self.denormalize(z)

    def _field(self, t, z):
        return self.blocks[0](t, z)

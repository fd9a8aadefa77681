"""Learned fields: networks ``f_θ(t, z)`` that map a normalised state to a tensor of its shape.

Complex states (wavefunctions) enter as (Re, Im) channels and leave as a complex tensor.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .. import _checks
from .base import LearnedField, real_dtype_arg, register, state_shape_arg

ACTIVATIONS = {
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "relu": nn.ReLU,
    "softplus": nn.Softplus,
    "elu": nn.ELU,
}


def make_activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(
            f"`activation` must be one of {', '.join(sorted(ACTIVATIONS))}, got {name!r}"
        )
    return ACTIVATIONS[name]()


def build_net(net, state_shape, complex_state: bool, dtype, **options) -> LearnedField:
    """A field from a registered name (``"mlp"``, ``"conv1d"``, ...) or an instance."""
    from .base import REGISTRY

    if isinstance(net, LearnedField):
        if tuple(net.state_shape) != tuple(state_shape):
            raise ValueError(
                f"`net` has state_shape {net.state_shape}, the model has {tuple(state_shape)}"
            )
        return net
    cls = REGISTRY.resolve(net)
    if not issubclass(cls, LearnedField):
        raise TypeError(f"`net` must name a learned field, got {net!r} ({cls.__name__})")
    return cls(state_shape=state_shape, complex_state=complex_state, dtype=dtype, **options)


def _scale_last(layer: nn.Module, init_scale: float) -> None:
    """Small last layer: a residual model starts near the identity map."""
    with torch.no_grad():
        layer.weight.mul_(init_scale)
        layer.bias.zero_()


@register("mlp")
class MLP(LearnedField):
    """Fully connected field on the flattened state (complex: [Re, Im] concatenated).

    Parameters
    ----------
    state_shape : tuple of int
    complex_state : bool
    width : int, hidden units per layer
    layers : int, hidden layers (>= 1)
    activation : str, one of ``tanh``, ``gelu``, ``silu``, ``relu``, ``softplus``, ``elu``
    time_dependent : bool, feed ``t`` as an extra input
    init_scale : float, scale of the last layer's initial weights
    linear_skip : bool, add a learned linear map of the input (zero at start): the network
        then only learns the nonlinear remainder (exact for linear dynamics)
    dtype : torch.float32 or torch.float64
    """

    def __init__(
        self,
        state_shape,
        *,
        complex_state: bool = False,
        width: int = 64,
        layers: int = 2,
        activation: str = "tanh",
        time_dependent: bool = False,
        init_scale: float = 0.1,
        linear_skip: bool = False,
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        self.state_shape = state_shape_arg(state_shape)
        self.complex_state = bool(complex_state)
        self.time_dependent = bool(time_dependent)
        width = _checks.positive_int("width", width)
        layers = _checks.positive_int("layers", layers)
        dtype = real_dtype_arg(dtype)
        n = math.prod(self.state_shape) * (2 if complex_state else 1)
        sizes = [n + int(time_dependent)] + [width] * layers
        modules: list[nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:], strict=True):
            modules += [nn.Linear(a, b, dtype=dtype), make_activation(activation)]
        modules.append(nn.Linear(width, n, dtype=dtype))
        _scale_last(modules[-1], init_scale)
        self.net = nn.Sequential(*modules)
        self.linear = None
        if linear_skip:
            self.linear = nn.Linear(n, n, bias=False, dtype=dtype)
            nn.init.zeros_(self.linear.weight)

    def forward(self, t, z: torch.Tensor) -> torch.Tensor:
        batch = z.shape[0]
        h = torch.view_as_real(z).reshape(batch, -1) if z.is_complex() else z.reshape(batch, -1)
        if self.time_dependent:
            tt = torch.as_tensor(t, dtype=h.dtype, device=h.device).reshape(-1, 1)
            h = torch.cat([h, tt.expand(batch, 1)], dim=1)
        out = self.net(h)
        if self.linear is not None:
            out = out + self.linear(h[:, : self.linear.in_features])
        if z.is_complex():
            return torch.view_as_complex(out.reshape(*z.shape, 2).contiguous())
        return out.reshape(z.shape)


@register("conv1d")
class PeriodicConv1d(LearnedField):
    """Translation-equivariant field on a periodic 1D grid (circular padding).

    States of shape ``(n,)`` are one channel, ``(c, n)`` are ``c`` channels; complex states
    double the channels as (Re, Im).

    Parameters
    ----------
    state_shape : ``(n,)`` or ``(c, n)``
    complex_state : bool
    width : int, hidden channels
    layers : int, hidden convolutions (>= 1)
    kernel_size : int, odd
    activation, init_scale, dtype : as :class:`MLP`
    """

    def __init__(
        self,
        state_shape,
        *,
        complex_state: bool = False,
        width: int = 32,
        layers: int = 3,
        kernel_size: int = 5,
        activation: str = "gelu",
        init_scale: float = 0.1,
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        self.state_shape = state_shape_arg(state_shape)
        if len(self.state_shape) not in (1, 2):
            raise ValueError(
                f"`state_shape` must be (n,) or (channels, n) for conv1d, got {self.state_shape}"
            )
        self.complex_state = bool(complex_state)
        width = _checks.positive_int("width", width)
        layers = _checks.positive_int("layers", layers)
        kernel_size = _checks.positive_int("kernel_size", kernel_size)
        if kernel_size % 2 == 0:
            raise ValueError(f"`kernel_size` must be odd, got {kernel_size}")
        dtype = real_dtype_arg(dtype)
        channels = self.state_shape[0] if len(self.state_shape) == 2 else 1
        channels *= 2 if complex_state else 1
        sizes = [channels] + [width] * layers
        modules: list[nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:], strict=True):
            modules += [
                nn.Conv1d(
                    a,
                    b,
                    kernel_size,
                    padding=kernel_size // 2,
                    padding_mode="circular",
                    dtype=dtype,
                ),
                make_activation(activation),
            ]
        modules.append(
            nn.Conv1d(
                width,
                channels,
                kernel_size,
                padding=kernel_size // 2,
                padding_mode="circular",
                dtype=dtype,
            )
        )
        _scale_last(modules[-1], init_scale)
        self.net = nn.Sequential(*modules)

    def forward(self, t, z: torch.Tensor) -> torch.Tensor:
        batch, n = z.shape[0], self.state_shape[-1]
        h = z.reshape(batch, -1, n)  # (B, C, N)
        if z.is_complex():
            h = torch.cat([h.real, h.imag], dim=1)  # (B, 2C, N)
        out = self.net(h)
        if z.is_complex():
            c = out.shape[1] // 2
            out = torch.complex(out[:, :c], out[:, c:])
        return out.reshape(z.shape)

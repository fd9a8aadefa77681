"""Deep stacks of blocks, plain or residual, for the depth study (``physres run depth``).

A residual stack applies ``h ← (1 − β)·h + α·g_i(h)`` for ``i = 1..L``; a plain stack applies
``h ← g_i(h)``. With one shared block (weights tied) and ``α = T/L, β = 0`` the residual stack is
``L`` forward-Euler steps of the field ``g`` over a time ``T``, so it converges to the Neural ODE
flow of ``g`` at first order in ``1/L`` (Chen et al. 2018; Haber & Ruthotto 2017). Scaling
``α ∝ 1/√L`` keeps the signal and its gradient of order one as ``L`` grows at initialisation
(Hayou et al. 2021). A trained residual stack behaves like an ensemble of shallower paths and
survives deleting single blocks, where a plain stack does not (Veit et al. 2016).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from . import _checks

ALPHA_RULES = ("1", "1/sqrt(L)", "1/L")


def alpha_for(rule: str, depth: int, scale: float = 1.0) -> float:
    """``α`` for ``depth`` blocks by ``rule`` (``ALPHA_RULES``): ``scale``, ``scale/√L``,
    ``scale/L``."""
    depth = _checks.positive_int("depth", depth)
    if rule == "1":
        return float(scale)
    if rule == "1/sqrt(L)":
        return scale / math.sqrt(depth)
    if rule == "1/L":
        return scale / depth
    raise ValueError(f"`rule` must be one of {', '.join(ALPHA_RULES)}, got {rule!r}")


def tanh_block(width: int, hidden: int | None = None, *, dtype=torch.float32) -> nn.Module:
    """``g(h) = tanh(W h + b)`` (``hidden=None``), or the MLP field
    ``W₃ tanh(W₂ tanh(W₁ h + b₁) + b₂) + b₃`` through ``hidden`` units. PyTorch default init."""
    width = _checks.positive_int("width", width)
    if hidden is None:
        return nn.Sequential(nn.Linear(width, width, dtype=dtype), nn.Tanh())
    hidden = _checks.positive_int("hidden", hidden)
    return nn.Sequential(
        nn.Linear(width, hidden, dtype=dtype),
        nn.Tanh(),
        nn.Linear(hidden, hidden, dtype=dtype),
        nn.Tanh(),
        nn.Linear(hidden, width, dtype=dtype),
    )


class Stack(nn.Module):
    """``L`` blocks applied in sequence, plain or residual.

    Parameters
    ----------
    blocks : list of nn.Module (one per layer), or one nn.Module shared by all ``depth`` layers
        (weight tying).
    depth : int, required when ``blocks`` is a single module.
    residual : bool
        ``h ← (1 − β)·h + α·g_i(h)`` when True, ``h ← g_i(h)`` when False.
    alpha, beta : float
        Residual scaling; ignored by plain stacks.

    ``forward(h, skip=())`` takes ``h`` of shape (batch, width) and the indices of blocks to
    delete (treated as the identity map), and returns (batch, width).
    """

    def __init__(
        self,
        blocks,
        *,
        depth: int | None = None,
        residual: bool = True,
        alpha: float = 1.0,
        beta: float = 0.0,
    ):
        super().__init__()
        if isinstance(blocks, nn.Module):
            if depth is None:
                raise TypeError("`depth` is required when `blocks` is one (weight-tied) module")
            self.depth = _checks.positive_int("depth", depth)
            self.blocks = nn.ModuleList([blocks])
            self.tied = True
        else:
            blocks = list(blocks)
            if not blocks or not all(isinstance(b, nn.Module) for b in blocks):
                raise TypeError("`blocks` must be an nn.Module or a non-empty list of them")
            if depth is not None and depth != len(blocks):
                raise ValueError(f"`depth` = {depth} does not match {len(blocks)} blocks")
            self.depth = len(blocks)
            self.blocks = nn.ModuleList(blocks)
            self.tied = False
        self.residual = bool(residual)
        self.alpha = float(alpha)
        self.beta = float(beta)

    def block(self, i: int) -> nn.Module:
        return self.blocks[0 if self.tied else i]

    def forward(self, h: torch.Tensor, skip=()) -> torch.Tensor:
        skip = set(skip)
        for i in range(self.depth):
            if i in skip:
                continue
            g = self.block(i)(h)
            if not self.residual:
                h = g
            elif self.beta:
                h = (1.0 - self.beta) * h + self.alpha * g
            else:
                h = h + self.alpha * g
        return h

    def extra_repr(self) -> str:
        kind = "residual" if self.residual else "plain"
        return (
            f"{kind}, depth={self.depth}, alpha={self.alpha:g}, beta={self.beta:g}, "
            f"tied={self.tied}"
        )


class DeepNet(nn.Module):
    """``head ∘ stack ∘ embed``: ``Linear(dim, width)``, ``depth`` tanh blocks,
    ``Linear(width, dim)``.

    ``x`` : Tensor, shape (batch, dim) → (batch, dim). ``embed`` is the first layer.
    """

    def __init__(
        self,
        dim: int,
        width: int,
        depth: int,
        *,
        residual: bool = True,
        alpha: float = 1.0,
        beta: float = 0.0,
        dtype=torch.float32,
    ):
        super().__init__()
        dim = _checks.positive_int("dim", dim)
        width = _checks.positive_int("width", width)
        depth = _checks.positive_int("depth", depth)
        self.embed = nn.Linear(dim, width, dtype=dtype)
        self.stack = Stack(
            [tanh_block(width, dtype=dtype) for _ in range(depth)],
            residual=residual,
            alpha=alpha,
            beta=beta,
        )
        self.head = nn.Linear(width, dim, dtype=dtype)

    def forward(self, x: torch.Tensor, skip=()) -> torch.Tensor:
        return self.head(self.stack(self.embed(x), skip=skip))


def first_layer_grad_norm(net: DeepNet, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Frobenius norms of ``∂MSE/∂W`` at the first (``embed``) and last (``head``) layers."""
    net.zero_grad(set_to_none=True)
    loss = torch.mean((net(x) - y) ** 2)
    loss.backward()
    first = float(net.embed.weight.grad.norm())
    last = float(net.head.weight.grad.norm())
    net.zero_grad(set_to_none=True)
    return first, last

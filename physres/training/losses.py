"""Losses of the fit loop: the unrolled K-step loss in normalised units."""

from __future__ import annotations

import torch
from torch import nn


def unrolled_loss(model, inputs: torch.Tensor, targets: torch.Tensor, dt: float,
                  k: int) -> torch.Tensor:
    """Mean squared error of ``k`` autoregressive steps, in units of the data's std.

    Parameters
    ----------
    model : LearnedStepper
    inputs : Tensor, shape (batch, input_len, *state_shape); the last frame is the start
    targets : Tensor, shape (batch, >= k, *state_shape); the next frames, ``dt`` apart
    k : int, steps to unroll (1 = one-step loss)

    Returns
    -------
    Tensor, 0-d: ``mean_j mean |(x̂_j − x_j)/σ|²`` over the ``k`` steps
    """
    x = inputs[:, -1]
    std = model.norm_std.to(x.real.dtype if x.is_complex() else x.dtype)
    total = x.new_zeros((), dtype=std.dtype)
    for j in range(k):
        x = model._step(x, 0.0, dt)
        total = total + ((x - targets[:, j]) / std).abs().pow(2).mean()
    return total / k


class UnrolledLoss(nn.Module):
    """The loss as a module, so ``DistributedDataParallel`` can wrap it."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, inputs, targets, dt: float, k: int):
        return unrolled_loss(self.model, inputs, targets, dt, k)


@torch.no_grad()
def rollout_error(model, states: torch.Tensor, dt: float) -> float:
    """Mean over trajectories of ``‖x̂ − x‖ / ‖x‖`` over a whole rollout (norms over every
    saved step and component); ``inf`` if the rollout diverges.

    ``states`` : Tensor, shape (batch, n_frames, *state_shape), frames ``dt`` apart.
    """
    from ..errors import DivergenceError
    from ..rollout import rollout

    try:
        pred = rollout(model, states[:, 0], dt, states.shape[1] - 1)
    except DivergenceError:
        return float("inf")
    diff = (pred - states).abs().pow(2).flatten(1).sum(1)
    ref = states.abs().pow(2).flatten(1).sum(1).clamp_min(torch.finfo(diff.dtype).tiny)
    return float((diff / ref).sqrt().mean())

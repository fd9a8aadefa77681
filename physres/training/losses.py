"""Losses of the fit loop: the unrolled K-step loss in normalised units."""

from __future__ import annotations

import torch
from torch import nn


def unrolled_loss(
    model, inputs: torch.Tensor, targets: torch.Tensor, dt: float, k: int, pushforward: bool = False
) -> torch.Tensor:
    """Mean squared error of ``k`` autoregressive steps, in units of the data's std.

    Parameters
    ----------
    model : LearnedStepper
    inputs : Tensor, shape (batch, input_len, *state_shape); the last frame is the start
    targets : Tensor, shape (batch, >= k, *state_shape); the next frames, ``dt`` apart
    k : int, steps to unroll (1 = one-step loss)
    pushforward : bool
        The pushforward trick (Brandstetter et al. 2022, "Message passing neural PDE
        solvers"): the first ``k − 1`` steps run without gradient and only the last step is
        scored, so the model learns to correct the distribution of its own rollouts.

    Returns
    -------
    Tensor, 0-d: ``mean_j mean |(x̂_j − x_j)/σ|²`` over the ``k`` steps (the last only with
    ``pushforward``)
    """
    x = inputs[:, -1]
    std = model.norm_std.to(x.real.dtype if x.is_complex() else x.dtype)
    if pushforward:
        with torch.no_grad():
            for _ in range(k - 1):
                x = model.step(x, 0.0, dt)
        return ((model.step(x, 0.0, dt) - targets[:, k - 1]) / std).abs().pow(2).mean()
    total = x.new_zeros((), dtype=std.dtype)
    for j in range(k):
        x = model.step(x, 0.0, dt)
        total = total + ((x - targets[:, j]) / std).abs().pow(2).mean()
    return total / k


class UnrolledLoss(nn.Module):
    """The loss as a module, so ``DistributedDataParallel`` can wrap it."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, inputs, targets, dt: float, k: int, pushforward: bool = False):
        return unrolled_loss(self.model, inputs, targets, dt, k, pushforward)


@torch.no_grad()
def rollout_error(model, states: torch.Tensor, dt: float, threshold: float | None = None) -> float:
    """Validation score of a rollout from each trajectory's first frame.

    ``threshold=None``: mean over trajectories of ``‖x̂ − x‖ / ‖x‖`` over the whole rollout
    (norms over every saved step and component); ``inf`` if the rollout diverges.
    ``threshold=θ``: the per-step error ``e_t = ‖x̂_t − x_t‖ / rms_t ‖x_t‖`` capped at ``θ``,
    averaged over steps and trajectories. Steps after the prediction is lost count ``θ``
    each, so on chaotic data the score falls both with a smaller error and with a longer
    valid time (``≈ θ·(1 − T_valid/T)``), where the uncapped error saturates at the
    attractor's size whatever the model; a diverged rollout scores ``θ``.

    ``states`` : Tensor, shape (batch, n_frames, *state_shape), frames ``dt`` apart.
    """
    from ..errors import DivergenceError
    from ..rollout import rollout

    try:
        pred = rollout(model, states[:, 0], dt, states.shape[1] - 1)
    except DivergenceError:
        return float("inf") if threshold is None else float(threshold)
    if threshold is not None:
        err = (pred[:, 1:] - states[:, 1:]).abs().pow(2).flatten(2).sum(2).sqrt()  # (B, T)
        rms = states.abs().pow(2).flatten(2).sum(2).mean(1, keepdim=True).sqrt()
        err = err / rms.clamp_min(torch.finfo(err.dtype).tiny)
        err = torch.nan_to_num(err, nan=threshold, posinf=threshold)
        return float(err.clamp_max(threshold).mean())
    diff = (pred - states).abs().pow(2).flatten(1).sum(1)
    ref = states.abs().pow(2).flatten(1).sum(1).clamp_min(torch.finfo(diff.dtype).tiny)
    return float((diff / ref).sqrt().mean())

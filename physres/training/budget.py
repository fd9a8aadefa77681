"""A training budget in optimiser steps: ``fit_for_steps(model, data, steps)``."""

from __future__ import annotations

import math

from ..data import WindowDataset
from .config import TrainConfig
from .loop import fit


def fit_for_steps(
    model,
    data,
    steps: int,
    *,
    unroll: int = 1,
    frame_step: int = 1,
    batch_size: int = 128,
    lr: float = 3e-3,
    normalize: bool = True,
    device=None,
    progress: bool = True,
):
    """Train ``model`` on the trajectory file ``data`` for about ``steps`` optimiser steps.

    :func:`physres.training.fit` counts in epochs; this picks the epochs that make about
    ``steps`` AdamW steps of ``batch_size`` windows, with the cosine schedule spanning exactly
    those epochs and no second-order finish (a budget in optimiser steps means AdamW steps).
    ``normalize``, ``device`` and ``progress`` as in :class:`TrainConfig`. Returns the
    :class:`FitResult`.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"`steps` must be a positive int, got {steps!r}")
    windows = len(
        WindowDataset(data, input_len=1, target_len=unroll, frame_step=frame_step, split="train")
    )
    per_epoch = max(1, math.ceil(windows / batch_size))
    epochs = max(1, round(steps / per_epoch))
    config = TrainConfig(
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        unroll=unroll,
        frame_step=frame_step,
        curriculum_epochs=max(1, epochs // 2),
        patience=None,
        val_every=epochs,
        normalize=normalize,
        device=device,
        progress=progress,
        polish_steps=0,
    )
    return fit(model, data, config)

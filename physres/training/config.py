"""Training configuration: one dataclass, checked on construction."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .. import _checks

SCHEDULES = ("cosine", "constant")
POLISH_METHODS = ("lbfgs", "lm")


@dataclass
class TrainConfig:
    """Settings of :func:`physres.training.fit`.

    Optimisation
        ``epochs``, ``batch_size``, ``lr`` (peak learning rate of AdamW), ``weight_decay``,
        ``schedule`` (``"cosine"`` decay to ``lr·min_lr_ratio`` or ``"constant"``) after
        ``warmup_steps`` of linear warm-up, ``grad_clip`` (max gradient norm, None for none).
    Loss
        ``unroll``: the longest unroll K of the K-step loss (1 = one-step loss); K ramps
        linearly from 1 to ``unroll`` over ``curriculum_epochs`` (default: half the epochs).
    Data
        ``frame_step``: the model's step is ``frame_step`` saved steps (dt = frame_step·dt_save);
        ``fractions`` and ``split_seed`` of the train/val/test split by trajectory;
        ``normalize``: set the model's normalisation from the training split.
    Validation and early stopping
        Every ``val_every`` epochs, roll the model out over up to ``val_trajectories``
        validation trajectories for ``val_steps`` steps (default: their whole length) and
        score the relative L2 error; stop after ``patience`` evaluations without improvement
        (None: never) and restore the best weights.
    Polish
        ``polish_steps`` iterations of a full-batch second-order method after the AdamW
        epochs, on the K-step loss (K = ``unroll``) over up to ``polish_windows`` training
        windows; the validation error decides whether the polished weights are kept. Single
        process only. ``polish_method``: ``"lbfgs"`` (strong Wolfe line search, up to
        ``polish_iter`` inner iterations per step) or ``"lm"`` (Levenberg–Marquardt on the
        per-sample residuals: far more accurate for small models, up to
        :data:`physres.training.lm.MAX_PARAMS` parameters; ``polish_iter`` unused).
    Runtime
        ``seed``; ``device`` (default: cuda if available); ``amp`` (mixed precision: None =
        on CUDA only; refused on CPU); ``checkpoint`` path written every ``checkpoint_every``
        optimiser steps and at each epoch end, ``resume`` from it; ``log`` path prefix for
        ``.csv`` and ``.json`` loss logs; ``max_steps`` stops early (the schedule still spans
        ``epochs``), ``progress`` bar; ``num_workers`` of the data loader.
    """

    epochs: int = 100
    batch_size: int = 256
    lr: float = 3e-3
    weight_decay: float = 1e-6
    schedule: str = "cosine"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.01
    grad_clip: float | None = 1.0
    unroll: int = 1
    curriculum_epochs: int | None = None
    frame_step: int = 1
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    split_seed: int = 0
    normalize: bool = True
    val_every: int = 1
    val_steps: int | None = None
    val_trajectories: int = 16
    patience: int | None = 20
    polish_steps: int = 0
    polish_method: str = "lbfgs"
    polish_iter: int = 20
    polish_windows: int = 4096
    seed: int = 0
    device: str | None = None
    amp: bool | None = None
    checkpoint: str | None = None
    checkpoint_every: int = 0
    resume: bool = False
    log: str | None = None
    max_steps: int | None = None
    progress: bool = True
    num_workers: int = 0

    def __post_init__(self):
        for name in ("epochs", "batch_size", "unroll", "frame_step", "val_every",
                     "val_trajectories"):
            _checks.positive_int(name, getattr(self, name))
        for name in ("polish_iter", "polish_windows"):
            _checks.positive_int(name, getattr(self, name))
        for name in ("warmup_steps", "checkpoint_every", "seed", "split_seed", "num_workers",
                     "polish_steps"):
            _checks.positive_int(name, getattr(self, name), allow_zero=True)
        for name in ("curriculum_epochs", "patience", "val_steps", "max_steps"):
            if getattr(self, name) is not None:
                _checks.positive_int(name, getattr(self, name), allow_zero=name != "val_steps")
        _checks.positive("lr", self.lr)
        _checks.positive("weight_decay", self.weight_decay, allow_zero=True)
        _checks.positive("min_lr_ratio", self.min_lr_ratio, allow_zero=True)
        if self.grad_clip is not None:
            _checks.positive("grad_clip", self.grad_clip)
        if self.schedule not in SCHEDULES:
            raise ValueError(f"`schedule` must be one of {', '.join(SCHEDULES)}, "
                             f"got {self.schedule!r}")
        if self.polish_method not in POLISH_METHODS:
            raise ValueError(f"`polish_method` must be one of {', '.join(POLISH_METHODS)}, "
                             f"got {self.polish_method!r}")
        if self.resume and not self.checkpoint:
            raise ValueError("`resume` needs a `checkpoint` path to resume from")
        self.fractions = tuple(float(f) for f in self.fractions)

    def unroll_at(self, epoch: int) -> int:
        """K of the K-step loss at ``epoch`` (0-based): 1 → ``unroll`` linearly."""
        ramp = self.curriculum_epochs
        if ramp is None:
            ramp = max(1, self.epochs // 2)
        if ramp == 0 or self.unroll == 1:
            return self.unroll
        return min(self.unroll, 1 + (epoch * (self.unroll - 1)) // ramp)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - fields
        if unknown:
            raise ValueError(f"unknown training settings: {', '.join(sorted(unknown))}")
        return cls(**data)

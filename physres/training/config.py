"""Training configuration: one dataclass, checked on construction."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from .. import _checks

SCHEDULES = ("cosine", "constant")
POLISH_METHODS = ("auto", "lstsq", "lm", "gn", "lbfgs", "none")
DTYPES = ("auto", "float32", "float64")
VAL_METRICS = ("clipped", "full")


@dataclass
class TrainConfig:
    """Settings of :func:`physres.training.fit`.

    Optimisation
        ``epochs`` (None: chosen by fit from its plan — a warm-up of about 200 AdamW steps
        before a dense Levenberg–Marquardt finish, else 100), ``batch_size``, ``lr`` (peak
        learning rate of AdamW), ``weight_decay``,
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
        score them (``val_metric``); stop after ``patience`` evaluations without improvement
        (None: never) and restore the best weights.
    Precision and data
        ``precision``: ``"auto"`` casts the model to float64 for float64 data; ``in_memory``:
        gather batches from the training trajectories held on the device (None: when they
        take at most 1 GiB), else stream them from HDF5. ``noise`` (start-state noise, in data
        stds) and ``pushforward`` (gradient through the last unrolled step only) for long
        horizons. ``val_metric``: ``"clipped"`` (per-step error capped at ``val_threshold``,
        chaos-aware) or ``"full"`` (whole-rollout relative error).
    Polish
        ``polish_steps`` iterations at most (None: 800 for the dense Levenberg–Marquardt
        finish after the automatic warm-up, else 30) of a full-batch second-order finish
        after the AdamW epochs, on the K-step loss over up to ``polish_windows`` training
        windows, ended early when the loss falls by less than the fraction ``polish_stall``
        over 25 iterations; the validation score decides whether the polished weights are
        kept. ``polish_method``: ``"auto"`` (least squares for models linear in their
        parameters, dense Levenberg–Marquardt for small ones, matrix-free
        Gauss–Newton–CG beyond, L-BFGS when the step cannot be differentiated by
        ``torch.func``), or any of ``"lstsq"``, ``"lm"``, ``"gn"`` (``polish_iter`` CG
        iterations per step), ``"lbfgs"`` (``polish_iter`` inner iterations), ``"none"``.
        Every choice is recorded in ``model.training_info``.
    Runtime
        ``seed``; ``device`` (default: cuda if available); ``amp`` (fp16 mixed precision: opt-in,
        CUDA only, refused on CPU); ``checkpoint`` path written every ``checkpoint_every``
        optimiser steps and at each epoch end, ``resume`` from it; ``log`` path prefix for
        ``.csv`` and ``.json`` loss logs; ``max_steps`` stops early (the schedule still spans
        ``epochs``), ``progress`` bar; ``num_workers`` of the data loader.
    """

    epochs: int | None = field(
        default=None,
        metadata={
            "resume": True,
            "help": (
                "passes over the training windows; automatic: a warm-up of about 200 AdamW steps "
                "before a dense Levenberg-Marquardt finish, else 100"
            ),
        },
    )
    batch_size: int = field(
        default=256, metadata={"resume": True, "help": ("windows per optimiser step")}
    )
    lr: float = field(
        default=3e-3, metadata={"resume": True, "help": ("peak learning rate of AdamW")}
    )
    weight_decay: float = field(
        default=1e-6, metadata={"resume": True, "help": ("AdamW weight decay")}
    )
    schedule: str = field(
        default="cosine",
        metadata={
            "resume": True,
            "help": ("learning-rate schedule after warm-up: cosine or constant"),
        },
    )
    warmup_steps: int = field(
        default=0, metadata={"resume": True, "help": ("optimiser steps of linear warm-up")}
    )
    min_lr_ratio: float = field(
        default=0.01,
        metadata={
            "resume": True,
            "help": ("final learning rate of the cosine schedule, as a fraction of lr"),
        },
    )
    grad_clip: float | None = field(
        default=1.0, metadata={"resume": True, "help": ("max gradient norm (None: no clipping)")}
    )
    unroll: int = field(
        default=2,
        metadata={
            "resume": True,
            "help": ("longest unroll K of the K-step loss (1: one-step loss)"),
        },
    )
    curriculum_epochs: int | None = field(
        default=None,
        metadata={
            "resume": True,
            "help": ("epochs over which K ramps from 1 to unroll (default: half the epochs)"),
        },
    )
    frame_step: int = field(
        default=1,
        metadata={
            "resume": True,
            "help": ("saved steps per model step (dt = frame_step * dt_save)"),
        },
    )
    fractions: tuple[float, float, float] = field(
        default=(0.8, 0.1, 0.1),
        metadata={"resume": True, "help": ("train/val/test fractions of the trajectories")},
    )
    split_seed: int = field(
        default=0, metadata={"resume": True, "help": ("seed of the train/val/test split")}
    )
    normalize: bool = field(
        default=True,
        metadata={
            "resume": True,
            "help": ("normalise states by the training split's mean and std"),
        },
    )
    precision: str = field(
        default="auto",
        metadata={
            "resume": True,
            "help": (
                "dtype fit trains the model's parameters in: auto (float64 for float64 data, the "
                "model is cast), float32 or float64"
            ),
        },
    )
    noise: float = field(
        default=0.0,
        metadata={
            "resume": True,
            "help": (
                "std of Gaussian noise added to each window's start, in units of the data's std"
            ),
        },
    )
    pushforward: bool = field(
        default=False,
        metadata={
            "resume": True,
            "help": (
                "pushforward trick: no gradient through all but the last unrolled step "
                "(Brandstetter et al. 2022)"
            ),
        },
    )
    in_memory: bool | None = field(
        default=None,
        metadata={
            "help": (
                "hold the training trajectories as tensors on the device (None: when they take at"
                " most 1 GiB)"
            )
        },
    )
    val_every: int = field(default=1, metadata={"help": "epochs between validations"})
    val_steps: int | None = field(
        default=None,
        metadata={"help": ("steps of each validation rollout (default: the whole trajectory)")},
    )
    val_trajectories: int = field(
        default=16, metadata={"help": ("validation trajectories rolled out")}
    )
    val_metric: str = field(
        default="clipped",
        metadata={
            "help": (
                "validation score: clipped (mean per-step error, each step capped at "
                "val_threshold: the error until the rollout is lost, so chaotic data do not "
                "saturate it) or full (relative error over the whole rollout)"
            )
        },
    )
    val_threshold: float = field(
        default=0.4,
        metadata={
            "help": (
                "cap of the clipped validation error (per-step error in units of the trajectory's"
                " RMS norm)"
            )
        },
    )
    patience: int | None = field(
        default=20,
        metadata={"help": ("validations without improvement before stopping (None: never)")},
    )
    polish_steps: int | None = field(
        default=None,
        metadata={
            "resume": True,
            "help": (
                "iterations of the second-order finish after AdamW at most (0: none); automatic: "
                "800 for a dense Levenberg-Marquardt finish after the automatic warm-up, else 30"
            ),
        },
    )
    polish_stall: float = field(
        default=0.1,
        metadata={
            "resume": True,
            "help": (
                "stop the Levenberg-Marquardt / Gauss-Newton finish when its loss falls by less "
                "than this fraction over 25 iterations (0: never)"
            ),
        },
    )
    polish_method: str = field(
        default="auto",
        metadata={
            "resume": True,
            "help": (
                "second-order finish: auto, lstsq, lm (dense Levenberg-Marquardt), gn (matrix-"
                "free Gauss-Newton-CG), lbfgs or none"
            ),
        },
    )
    polish_iter: int = field(
        default=20,
        metadata={
            "resume": True,
            "help": ("inner iterations per L-BFGS step; CG iterations per Gauss-Newton step"),
        },
    )
    polish_windows: int = field(
        default=4096,
        metadata={"resume": True, "help": ("training windows in the full-batch finish")},
    )
    seed: int = field(
        default=0, metadata={"resume": True, "help": ("seed of the batch order and noise")}
    )
    device: str | None = field(
        default=None, metadata={"help": ("device (default: cuda if available, else cpu)")}
    )
    amp: bool = field(
        default=False,
        metadata={
            "help": (
                "fp16 mixed precision on CUDA (opt-in: it caps the emulator's accuracy near 1e-3)"
            )
        },
    )
    checkpoint: str | None = field(
        default=None,
        metadata={
            "help": (
                "checkpoint path (written every checkpoint_every steps, each epoch and on Ctrl-C)"
            )
        },
    )
    checkpoint_every: int = field(
        default=0, metadata={"help": ("optimiser steps between checkpoints (0: epoch ends only)")}
    )
    resume: bool = field(default=False, metadata={"help": "resume from checkpoint"})
    log: str | None = field(
        default=None, metadata={"help": ("path prefix of the .csv and .json loss logs")}
    )
    max_steps: int | None = field(
        default=None,
        metadata={
            "help": ("stop after this many optimiser steps (the schedule still spans epochs)")
        },
    )
    progress: bool = field(default=True, metadata={"help": "show a progress bar"})
    num_workers: int = field(
        default=0, metadata={"help": ("data-loader workers of the streaming path")}
    )

    def __post_init__(self):
        for name in ("batch_size", "unroll", "frame_step", "val_every", "val_trajectories"):
            _checks.positive_int(name, getattr(self, name))
        for name in ("polish_iter", "polish_windows"):
            _checks.positive_int(name, getattr(self, name))
        for name in ("warmup_steps", "checkpoint_every", "seed", "split_seed", "num_workers"):
            _checks.positive_int(name, getattr(self, name), allow_zero=True)
        for name in (
            "epochs",
            "curriculum_epochs",
            "patience",
            "val_steps",
            "max_steps",
            "polish_steps",
        ):
            if getattr(self, name) is not None:
                _checks.positive_int(
                    name, getattr(self, name), allow_zero=name not in ("val_steps", "epochs")
                )
        _checks.positive("lr", self.lr)
        _checks.positive("weight_decay", self.weight_decay, allow_zero=True)
        _checks.positive("min_lr_ratio", self.min_lr_ratio, allow_zero=True)
        if self.grad_clip is not None:
            _checks.positive("grad_clip", self.grad_clip)
        if self.schedule not in SCHEDULES:
            raise ValueError(
                f"`schedule` must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}"
            )
        if self.polish_method not in POLISH_METHODS:
            raise ValueError(
                f"`polish_method` must be one of {', '.join(POLISH_METHODS)}, "
                f"got {self.polish_method!r}"
            )
        if self.precision not in DTYPES:
            raise ValueError(
                f"`precision` must be one of {', '.join(DTYPES)}, got {self.precision!r}"
            )
        if self.val_metric not in VAL_METRICS:
            raise ValueError(
                f"`val_metric` must be one of {', '.join(VAL_METRICS)}, got {self.val_metric!r}"
            )
        _checks.positive("val_threshold", self.val_threshold)
        _checks.positive("noise", self.noise, allow_zero=True)
        _checks.positive("polish_stall", self.polish_stall, allow_zero=True)
        if self.polish_stall >= 1:
            raise ValueError(
                f"`polish_stall` must be below 1 (a fraction of the loss), got "
                f"{self.polish_stall!r}"
            )
        if self.resume and not self.checkpoint:
            raise ValueError("`resume` needs a `checkpoint` path to resume from")
        self.fractions = tuple(float(f) for f in self.fractions)

    def unroll_at(self, epoch: int, epochs: int | None = None) -> int:
        """K of the K-step loss at ``epoch`` (0-based): 1 → ``unroll`` linearly; ``epochs``:
        the run's epochs when ``self.epochs`` is automatic (None; fit decides, default 100)."""
        ramp = self.curriculum_epochs
        if ramp is None:
            total = self.epochs if self.epochs is not None else (epochs or 100)
            ramp = max(1, total // 2)
        if ramp == 0 or self.unroll == 1:
            return self.unroll
        return min(self.unroll, 1 + (epoch * (self.unroll - 1)) // ramp)

    @classmethod
    def resume_keys(cls) -> tuple[str, ...]:
        """The settings a resumed run must share with its checkpoint (``metadata["resume"]``)."""
        return tuple(f.name for f in dataclasses.fields(cls) if f.metadata.get("resume"))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - fields
        if unknown:
            raise ValueError(f"unknown training settings: {', '.join(sorted(unknown))}")
        return cls(**data)

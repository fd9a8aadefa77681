"""The fit loop: one place for every model (no training loop copied per model)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .. import _checks
from ..models.base import LearnedStepper
from . import distributed
from .checkpoint import load_checkpoint, save_checkpoint
from .config import TrainConfig
from .data import TrainingData
from .lm import lm_polish
from .log import write_logs
from .losses import UnrolledLoss, rollout_error

# Settings that define the run: a resumed run must use the same ones to continue it exactly.
_RUN_KEYS = ("epochs", "batch_size", "lr", "weight_decay", "schedule", "warmup_steps",
             "min_lr_ratio", "grad_clip", "unroll", "curriculum_epochs", "frame_step",
             "fractions", "split_seed", "normalize", "seed", "polish_steps", "polish_iter",
             "polish_windows", "polish_method")


@dataclass
class FitResult:
    """What :func:`fit` did. ``history``: one dict per optimiser step (``step``, ``epoch``,
    ``unroll``, ``lr``, ``loss``); ``evaluations``: one per validation (``epoch``, ``step``,
    ``val_error``)."""

    history: list[dict] = field(default_factory=list)
    evaluations: list[dict] = field(default_factory=list)
    best_val_error: float | None = None
    best_epoch: int | None = None
    stopped_early: bool = False
    interrupted: bool = False
    steps: int = 0
    epochs_run: int = 0
    wall_s: float = 0.0
    dt: float | None = None

    @property
    def losses(self) -> list[float]:
        return [h["loss"] for h in self.history]

    def summary(self) -> dict:
        return {"steps": self.steps, "epochs_run": self.epochs_run, "wall_s": self.wall_s,
                "best_val_error": _finite_or_none(self.best_val_error),
                "best_epoch": self.best_epoch, "stopped_early": self.stopped_early,
                "interrupted": self.interrupted, "dt": self.dt,
                "final_loss": self.history[-1]["loss"] if self.history else None}


def fit(model: LearnedStepper, data_path, config: TrainConfig | None = None, *,
        callback=None) -> FitResult:
    """Train ``model`` in place on the trajectories of an HDF5 file.

    The loss unrolls the model K steps from each window's first frame (K ramps from 1 to
    ``config.unroll``) and scores every step in units of the training data's std. AdamW with
    warm-up and a cosine (or constant) schedule, gradient clipping, early stopping on the
    validation rollout error (the best weights are restored), atomic checkpoints and exact
    resume, CSV/JSON logs, and data parallelism when launched by ``torchrun``.

    Parameters
    ----------
    model : LearnedStepper, e.g. ``physres.models.ResNetEmulator(state_shape=(2,))``
    data_path : path of an HDF5 trajectory file (schema v1, :func:`physres.data.generate`)
    config : TrainConfig (defaults if omitted)
    callback : callable ``(step, loss)``, optional, called after every optimiser step

    Returns
    -------
    FitResult
    """
    config = TrainConfig() if config is None else config
    if not isinstance(config, TrainConfig):
        raise TypeError(f"`config` must be a TrainConfig, got {type(config).__name__}")
    if not isinstance(model, LearnedStepper):
        raise TypeError(f"`model` must be a physres.models.LearnedStepper, "
                        f"got {type(model).__name__}")
    device = torch.device(config.device) if config.device else _checks.default_device()
    amp = _amp(config.amp, device)
    ctx, device = distributed.setup(device)
    try:
        return _Run(model, data_path, config, device, amp, ctx, callback).run()
    finally:
        distributed.teardown(ctx)


def _amp(setting, device) -> bool:
    if setting is None:
        return device.type == "cuda"
    if setting and device.type != "cuda":
        raise ValueError("`amp` (mixed precision) runs on CUDA only; the device is "
                         f"{device.type!r}")
    return bool(setting)


class _Run:
    """State of one training run (split out so that resume restores every part of it)."""

    def __init__(self, model, data_path, config, device, amp, ctx, callback):
        self.model, self.config, self.device, self.amp = model, config, device, amp
        self.ctx, self.callback = ctx, callback
        self.data = TrainingData(data_path, config)
        if model.dt is not None and not math.isclose(model.dt, self.data.dt, rel_tol=1e-9):
            raise ValueError(f"the model's `dt` = {model.dt:g} differs from the data's step "
                             f"frame_step·dt_save = {self.data.dt:g}; set `frame_step` to match")
        model.dt = self.data.dt
        if config.normalize:
            model.set_normalization(self.data.normalization["mean"],
                                    self.data.normalization["std"])
        model.to(device)
        torch.manual_seed(config.seed + 7919 * ctx.rank)
        self.per_epoch = len(self.data.batches(0, config.batch_size, config.seed, ctx.rank,
                                               ctx.world))
        self.total = config.epochs * self.per_epoch
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr,
                                           weight_decay=config.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: self._lr_factor(step))
        self.scaler = torch.amp.GradScaler("cuda") if amp else None
        if config.polish_steps and ctx.enabled:
            raise ValueError("`polish_steps` (full-batch L-BFGS) runs in a single process, "
                             "not under torchrun")
        self.state = {"epoch": 0, "batch": 0, "step": 0, "best": math.inf, "best_epoch": None,
                      "best_state": None, "bad": 0, "stopped_early": False, "wall_s": 0.0,
                      "polished": False}
        self.history: list[dict] = []
        self.evaluations: list[dict] = []
        if config.resume:
            self._restore(load_checkpoint(config.checkpoint))
        loss = UnrolledLoss(model)
        if ctx.enabled:
            from torch.nn.parallel import DistributedDataParallel

            stochastic = any(p > 0 for p in getattr(model, "drop", []))
            loss = DistributedDataParallel(
                loss, device_ids=[device] if device.type == "cuda" else None,
                find_unused_parameters=stochastic)
        self.loss = loss

    def _lr_factor(self, step: int) -> float:
        c = self.config
        if c.warmup_steps and step < c.warmup_steps:
            return (step + 1) / c.warmup_steps
        if c.schedule == "constant":
            return 1.0
        span = max(1, self.total - c.warmup_steps)
        progress = min(1.0, (step - c.warmup_steps) / span)
        return c.min_lr_ratio + (1 - c.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    # --- the loop ---------------------------------------------------------------------------
    def run(self) -> FitResult:
        c, s = self.config, self.state
        start = time.perf_counter() - s["wall_s"]
        from tqdm.auto import tqdm

        bar = tqdm(total=self.total, initial=s["step"], disable=not (c.progress and self.ctx.main),
                   desc=f"train {type(self.model).__name__}", unit="step", leave=False)
        interrupted = False
        try:
            while s["epoch"] < c.epochs and not s["stopped_early"] and not interrupted:
                interrupted = self._epoch(bar, start)
                if interrupted:
                    break
                s["epoch"] += 1
                s["batch"] = 0
                if s["epoch"] % c.val_every == 0 or s["epoch"] == c.epochs:
                    self._validate(bar)
                s["wall_s"] = time.perf_counter() - start
                self._checkpoint()
                self._write_logs()
            if not interrupted and c.polish_steps and not s["polished"]:
                self._polish(bar)
                s["wall_s"] = time.perf_counter() - start
                self._checkpoint()
        finally:
            bar.close()
        s["wall_s"] = time.perf_counter() - start
        if s["best_state"] is not None:
            self.model.load_state_dict(s["best_state"])
        self.model.eval()
        result = FitResult(
            history=self.history, evaluations=self.evaluations,
            best_val_error=None if s["best_epoch"] is None else s["best"],
            best_epoch=s["best_epoch"], stopped_early=s["stopped_early"],
            interrupted=interrupted, steps=s["step"], epochs_run=s["epoch"],
            wall_s=s["wall_s"], dt=self.data.dt)
        self._write_logs(result)
        return result

    def _epoch(self, bar, start) -> bool:
        """One epoch (from the saved batch position); True when stopped by ``max_steps``."""
        c, s = self.config, self.state
        k = c.unroll_at(s["epoch"])
        batches = self.data.batches(s["epoch"], c.batch_size, c.seed, self.ctx.rank,
                                    self.ctx.world)[s["batch"]:]
        self.model.train()
        for inputs, targets in self.data.loader(batches, c.num_workers):
            loss = self._optimise(inputs.to(self.device), targets.to(self.device), k)
            s["step"] += 1
            s["batch"] += 1
            lr = self.optimizer.param_groups[0]["lr"]
            self.history.append({"step": s["step"], "epoch": s["epoch"], "unroll": k,
                                 "lr": lr, "loss": loss})
            bar.update()
            bar.set_postfix(loss=f"{loss:.3e}", K=k, refresh=False)
            if self.callback is not None:
                self.callback(s["step"], loss)
            if c.checkpoint_every and s["step"] % c.checkpoint_every == 0:
                s["wall_s"] = time.perf_counter() - start
                self._checkpoint()
            if c.max_steps is not None and s["step"] >= c.max_steps:
                s["wall_s"] = time.perf_counter() - start
                self._checkpoint()
                return True
        return False

    def _optimise(self, inputs, targets, k) -> float:
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.float16, enabled=self.amp):
            loss = self.loss(inputs, targets, self.data.dt, k)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"training loss became non-finite at step {self.state['step'] + 1}; lower `lr`"
                " or `unroll`, or enable `grad_clip`")
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
        else:
            loss.backward()
        if self.config.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        return distributed.mean(self.ctx, float(loss.detach()), self.device)

    def _polish(self, bar) -> None:
        """Full-batch L-BFGS or Levenberg–Marquardt from the best weights so far (the network
        in eval mode, so the loss is deterministic); kept only if the validation error
        improves."""
        c, s = self.config, self.state
        if s["best_state"] is not None:
            self.model.load_state_dict(s["best_state"])
        g = torch.Generator().manual_seed(c.seed)
        index = torch.randperm(len(self.data.train), generator=g)[: c.polish_windows].tolist()
        items = [self.data.train[i] for i in index]
        inputs = torch.stack([a for a, _ in items]).to(self.device)
        targets = torch.stack([b for _, b in items]).to(self.device)
        self.model.eval()

        def record(loss: float) -> None:
            s["step"] += 1
            self.history.append({"step": s["step"], "epoch": s["epoch"], "unroll": c.unroll,
                                 "lr": 1.0, "loss": loss})
            bar.set_postfix(polish=f"{loss:.3e}", refresh=False)
            if self.callback is not None:
                self.callback(s["step"], loss)

        if c.polish_method == "lm":
            lm_polish(self.model, inputs, targets, self.data.dt, c.unroll, c.polish_steps,
                      callback=record)
        else:
            optimizer = torch.optim.LBFGS(self.model.parameters(), lr=1.0,
                                          max_iter=c.polish_iter, history_size=50,
                                          line_search_fn="strong_wolfe", tolerance_grad=1e-14,
                                          tolerance_change=1e-16)

            def closure():
                optimizer.zero_grad(set_to_none=True)
                loss = self.loss(inputs, targets, self.data.dt, c.unroll)
                loss.backward()
                return loss

            for _ in range(c.polish_steps):
                record(float(optimizer.step(closure).detach()))
        s["polished"] = True
        self._validate(bar)

    def _validate(self, bar) -> None:
        s, c = self.state, self.config
        if self.data.val_states is None:
            return
        self.model.eval()
        error = rollout_error(self.model, self.data.val_states.to(self.device), self.data.dt)
        error = distributed.from_main(self.ctx, error, self.device)
        self.evaluations.append({"epoch": s["epoch"], "step": s["step"], "val_error": error})
        bar.set_postfix(val=f"{error:.3e}", refresh=True)
        if error < s["best"]:
            s["best"], s["best_epoch"], s["bad"] = error, s["epoch"], 0
            s["best_state"] = {k: v.detach().cpu().clone()
                               for k, v in self.model.state_dict().items()}
        else:
            s["bad"] += 1
            if c.patience is not None and s["bad"] >= c.patience:
                s["stopped_early"] = True

    # --- persistence --------------------------------------------------------------------------
    def _checkpoint(self) -> None:
        if not self.config.checkpoint or not self.ctx.main:
            return
        state = {**self.state, "history": self.history, "evaluations": self.evaluations}
        save_checkpoint(self.config.checkpoint, self.model, self.optimizer, self.scheduler,
                        self.scaler, state, self.config.to_dict())

    def _restore(self, data: dict) -> None:
        saved = {"polish_method": "lbfgs", **data["config"]}  # older checkpoints lack it
        differ = [k for k in _RUN_KEYS if _plain(saved.get(k)) != _plain(getattr(self.config, k))]
        if differ:
            raise ValueError(f"cannot resume {self.config.checkpoint!r}: settings differ from "
                             f"the checkpointed run ({', '.join(differ)})")
        self.model.load_state_dict(data["model"]["state_dict"])
        self.optimizer.load_state_dict(data["optimizer"])
        self.scheduler.load_state_dict(data["scheduler"])
        if self.scaler is not None and data["scaler"] is not None:
            self.scaler.load_state_dict(data["scaler"])
        torch.set_rng_state(data["rng"])
        state = dict(data["state"])
        self.history = list(state.pop("history"))
        self.evaluations = list(state.pop("evaluations"))
        self.state.update(state)

    def _write_logs(self, result: FitResult | None = None) -> None:
        if not self.config.log or not self.ctx.main:
            return
        summary = {"model": type(self.model).name, "config": self.config.to_dict()}
        if result is not None:
            summary.update(result.summary())
        evaluations = [{**e, "val_error": _finite_or_none(e["val_error"])}
                       for e in self.evaluations]
        write_logs(Path(self.config.log), self.history, evaluations, summary)


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


def _finite_or_none(value):
    return value if value is not None and math.isfinite(value) else None

"""The fit loop: one place for every model (no training loop copied per model)."""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .. import _checks
from .._output import jsonable
from ..models.base import LearnedStepper
from . import distributed, lstsq
from .checkpoint import load_checkpoint, save_checkpoint
from .config import TrainConfig
from .data import TrainingData
from .lm import (
    DENSE_FLOPS,
    MAX_JACOBIAN,
    MAX_PARAMS,
    MIN_DENSE_WINDOWS,
    gn_polish,
    lm_polish,
    stalled,
)
from .log import write_logs
from .losses import UnrolledLoss, rollout_error

# Settings that define the run (``metadata["resume"]``): a resumed run must use the same ones.
_RUN_KEYS = TrainConfig.resume_keys()
# Automatic budgets (``epochs`` / ``polish_steps`` = None). A dense Levenberg–Marquardt finish
# works best after a short AdamW warm-up: long AdamW runs first end in minima LM cannot leave
# (oscillator, 32-wide MLP: 3 epochs + LM 5.6e-9, 100 epochs + LM 2.1e-4 over 1000 steps).
# With both automatic: the warm-up and up to LM_STEPS iterations; with `epochs` set, or from
# a least-squares start, POLISH_STEPS (a short finish, as before the warm-up recipe).
EPOCHS = 100  # AdamW epochs when no dense finish follows
WARMUP_STEPS = 200  # AdamW steps (whole epochs, at least one) before a dense finish
LM_STEPS = 800  # dense Levenberg–Marquardt iterations at most (stall stopping ends most runs)
POLISH_STEPS = 30  # iterations of the other finishes
STALL_WINDOW = 25  # iterations over which `polish_stall` is judged
LSTSQ_ROWS = 500_000  # rows of the least-squares system at most (pairs are strided beyond)
POSTFIX_EVERY = 25  # optimiser steps between progress-bar loss updates


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
        return {
            "steps": self.steps,
            "epochs_run": self.epochs_run,
            "wall_s": self.wall_s,
            "best_val_error": jsonable(self.best_val_error),
            "best_epoch": self.best_epoch,
            "stopped_early": self.stopped_early,
            "interrupted": self.interrupted,
            "dt": self.dt,
            "final_loss": self.history[-1]["loss"] if self.history else None,
        }


def fit(
    model: LearnedStepper, data_path, config: TrainConfig | None = None, *, callback=None
) -> FitResult:
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
        raise TypeError(
            f"`model` must be a physres.models.LearnedStepper, got {type(model).__name__}"
        )
    device = torch.device(config.device) if config.device else _checks.default_device()
    amp = _amp(config.amp, device)
    ctx, device = distributed.setup(device)
    try:
        return _Run(model, data_path, config, device, amp, ctx, callback).run()
    finally:
        distributed.teardown(ctx)


def _amp(setting, device) -> bool:
    if setting and device.type != "cuda":
        raise ValueError(
            f"`amp` (mixed precision) runs on CUDA only; the device is {device.type!r}"
        )
    return bool(setting)


class _Run:
    """State of one training run (split out so that resume restores every part of it)."""

    def __init__(self, model, data_path, config, device, amp, ctx, callback):
        self.model, self.config, self.device, self.amp = model, config, device, amp
        self.ctx, self.callback = ctx, callback
        self.data = TrainingData(data_path, config, device)
        _check_match(model, self.data)
        model.dt = self.data.dt
        built = getattr(model, "training_info", None)
        info = (
            {"model": dict(built["model"])}
            if isinstance(built, dict) and isinstance(built.get("model"), dict)
            else {}
        )
        info |= {
            "data": self.data.path,
            "dt": self.data.dt,
            "data_path": (
                "in memory (training trajectories held on the device, "
                f"{self.data.nbytes / 2**20:.1f} MiB)"
                if self.data.in_memory
                else "streamed from HDF5 (WindowDataset)"
            ),
        }
        dtype = _dtype(config.precision, self.data.dtype)
        if dtype is not None and model.net_dtype != dtype:
            model.to(dtype)
        info["dtype"] = f"{str(model.net_dtype).removeprefix('torch.')} ({_why_dtype(config)})"
        if config.normalize:
            mean, std = self.data.normalization["mean"], self.data.normalization["std"]
            info["normalization"] = "per-component mean and std of the training split"
            if _site_shared(model):  # one weight vector for every site: one scale for all
                var = (std**2 + (mean - mean.mean()) ** 2).mean()
                mean, std = mean.mean().expand_as(mean), var.sqrt().expand_as(std)
                info["normalization"] = (
                    "mean and std of the training split pooled over "
                    "sites (the field shares its weights across sites)"
                )
            model.set_normalization(mean, std)
        else:
            info["normalization"] = "none"
        model.to(device)
        torch.manual_seed(config.seed + 7919 * ctx.rank)
        self.linear = (
            lstsq.linear_kind(model) if config.polish_method in ("auto", "lstsq") else None
        )
        if config.polish_method == "lstsq" and self.linear is None:
            raise ValueError(
                f"`polish_method` = 'lstsq' needs a model linear in its "
                f"parameters (a one-block ResNetEmulator on net='poly', or a "
                f"NeuralODE on net='poly'), got {type(model).__name__}"
            )
        self.polish = _polish_plan(model, config, self.data, self.linear)
        if self.polish["method"] not in ("none", "lstsq") and ctx.enabled:
            if config.polish_method != "auto":
                raise ValueError(
                    "`polish_steps` (full-batch second-order finish) runs in a "
                    "single process, not under torchrun"
                )
            self.polish = {"method": "none", "reason": "not under torchrun (single process)"}
        self.skip_adamw = self.linear is not None
        if config.noise:
            info["noise"] = f"Gaussian, {config.noise:g} std on each window's start"
        if config.pushforward:
            info["pushforward"] = "gradient through the last unrolled step only"
        info["optimiser"] = (
            "AdamW skipped: the model is linear in its parameters, solved by least squares"
            if self.linear == "resnet"
            else "AdamW skipped: least-squares start for the polynomial field, "
            "then the second-order finish"
            if self.linear == "node"
            else f"AdamW, lr {config.lr:g}, {config.schedule} schedule"
        )
        info["polish"] = dict(self.polish)
        info["stopping"] = (
            f"validation every {config.val_every} epoch(s): "
            + (
                f"per-step rollout error capped at {config.val_threshold:g} (clipped)"
                if config.val_metric == "clipped"
                else "relative error over the whole rollout"
            )
            + (
                f", patience {config.patience}"
                if config.patience is not None
                else ", no early stopping"
            )
            + "; best weights restored"
        )
        self.per_epoch = len(
            self.data.batches(0, config.batch_size, config.seed, ctx.rank, ctx.world)
        )
        self.epochs, info["epochs"] = _epochs_plan(config, self.polish, self.per_epoch)
        info["unroll"] = (
            f"K-step loss, K = 1 → {config.unroll} over "
            f"{config.curriculum_epochs or max(1, self.epochs // 2)} epochs"
            if config.unroll > 1
            else "one-step loss"
        )
        self.info = info
        self.total = self.epochs * self.per_epoch
        self.optimizer = torch.optim.AdamW(
            model.parameters(), lr=config.lr, weight_decay=config.weight_decay, foreach=True
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: self._lr_factor(step)
        )
        self.scaler = torch.amp.GradScaler("cuda") if amp else None
        self.state = {
            "epoch": 0,
            "batch": 0,
            "step": 0,
            "best": math.inf,
            "best_epoch": None,
            "best_state": None,
            "bad": 0,
            "stopped_early": False,
            "wall_s": 0.0,
            "polished": False,
            "solved": False,
        }
        self.history: list[dict] = []
        self.evaluations: list[dict] = []
        if config.resume:
            self._restore(load_checkpoint(config.checkpoint))
        loss = UnrolledLoss(model)
        if ctx.enabled:
            from torch.nn.parallel import DistributedDataParallel

            stochastic = any(p > 0 for p in getattr(model, "drop", []))
            loss = DistributedDataParallel(
                loss,
                device_ids=[device] if device.type == "cuda" else None,
                find_unused_parameters=stochastic,
            )
        self.loss = loss

    def _say(self, text: str) -> None:
        if self.config.progress and self.ctx.main:
            from tqdm.auto import tqdm

            tqdm.write(text, file=sys.stderr)

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

        for key, value in self.info.items():
            self._say(f"fit: {key}: {value}")
        bar = tqdm(
            total=0 if self.skip_adamw else self.total,
            initial=s["step"],
            disable=not (c.progress and self.ctx.main),
            desc=f"train {type(self.model).__name__}",
            unit="step",
            leave=False,
        )
        interrupted = False
        try:
            if self.linear is not None and not s["solved"]:
                self._solve()
            while (
                not self.skip_adamw
                and s["epoch"] < self.epochs
                and not s["stopped_early"]
                and not interrupted
            ):
                interrupted = self._epoch(bar, start)
                if interrupted:
                    break
                s["epoch"] += 1
                s["batch"] = 0
                if s["epoch"] % c.val_every == 0 or s["epoch"] == self.epochs:
                    self._validate(bar)
                s["wall_s"] = time.perf_counter() - start
                self._checkpoint()
                self._write_logs()
            if (
                not interrupted
                and self.polish["method"] not in ("none", "lstsq")
                and not s["polished"]
            ):
                self._polish(bar)
                s["wall_s"] = time.perf_counter() - start
                self._checkpoint()
        except KeyboardInterrupt:
            s["wall_s"] = time.perf_counter() - start
            bar.close()
            self._checkpoint()
            where = (
                f"checkpoint written to {c.checkpoint!r}; continue with `--resume` "
                "(TrainConfig(resume=True))"
                if c.checkpoint and self.ctx.main
                else "no checkpoint path was set (`--checkpoint`), so the run cannot be resumed"
            )
            print(
                f"fit interrupted at step {s['step']} (epoch {s['epoch']}): {where}",
                file=sys.stderr,
            )
            raise
        finally:
            bar.close()
        s["wall_s"] = time.perf_counter() - start
        if s["best_state"] is not None:
            self.model.load_state_dict(s["best_state"])
        self.model.eval()
        result = FitResult(
            history=self.history,
            evaluations=self.evaluations,
            best_val_error=None if s["best_epoch"] is None else s["best"],
            best_epoch=s["best_epoch"],
            stopped_early=s["stopped_early"],
            interrupted=interrupted,
            steps=s["step"],
            epochs_run=s["epoch"],
            wall_s=s["wall_s"],
            dt=self.data.dt,
        )
        self.info["result"] = {
            k: v
            for k, v in result.summary().items()
            if k
            in ("steps", "epochs_run", "wall_s", "best_val_error", "best_epoch", "stopped_early")
        }
        self.model.training_info = jsonable(self.info, where="training_info")
        self._write_logs(result)
        return result

    def _solve(self) -> None:
        """Least squares for a polynomial model (exact for the ResNet form, a start for the
        NeuralODE form), then scored like an epoch."""
        s = self.state
        d = self.data
        sites = math.prod(d.state_shape) if _site_shared(self.model) else 1
        rows = len(d.train.trajectory_indices) * (d.train.n_t - d.frame_step) * sites
        stride = max(1, math.ceil(rows / LSTSQ_ROWS))
        chunk = max(1, 65536 // sites)
        out = lstsq.solve(self.model, d.pairs(chunk, stride))
        out["stride"] = stride
        s["solved"] = True
        self.info["lstsq"] = out
        self._say(
            f"fit: least squares over {out['pairs']} pairs, {out['features']} features:"
            f" rms one-step residual {out['rms_residual']:.3e}"
        )
        self._validate(None)

    def _epoch(self, bar, start) -> bool:
        """One epoch (from the saved batch position); True when stopped by ``max_steps``."""
        c, s = self.config, self.state
        k = c.unroll_at(s["epoch"], self.epochs)
        batches = self.data.batches(
            s["epoch"], c.batch_size, c.seed, self.ctx.rank, self.ctx.world
        )[s["batch"] :]
        self.model.train()
        history, callback = self.history, self.callback
        noise = c.noise * self.model.norm_std.to(self.device) if c.noise else None
        for inputs, targets in self.data.loader(batches, c.num_workers):
            inputs, targets = inputs.to(self.device), targets.to(self.device)
            if noise is not None:
                inputs = inputs + noise.to(inputs.dtype) * torch.randn_like(inputs)
            loss = self._optimise(inputs, targets, k)
            s["step"] += 1
            s["batch"] += 1
            history.append(
                {
                    "step": s["step"],
                    "epoch": s["epoch"],
                    "unroll": k,
                    "lr": self.optimizer.param_groups[0]["lr"],
                    "loss": loss,
                }
            )
            bar.update()
            if s["step"] % POSTFIX_EVERY == 0:
                bar.set_postfix(loss=f"{loss:.3e}", K=k, refresh=False)
            if callback is not None:
                callback(s["step"], loss)
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
            loss = self.loss(inputs, targets, self.data.dt, k, self.config.pushforward)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
        else:
            loss.backward()
        value = float(loss.detach())  # the only sync of the step
        if not math.isfinite(value):
            raise FloatingPointError(
                f"training loss became non-finite at step {self.state['step'] + 1}; lower `lr`"
                " or `unroll`, or enable `grad_clip`"
            )
        if self.config.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(
                self.model.parameters(), self.config.grad_clip, foreach=True
            )
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        if self.ctx.enabled:
            return distributed.mean(self.ctx, value, self.device)
        return value

    def _polish(self, bar) -> None:
        """Full-batch second-order finish from the best weights so far (the network in eval
        mode, so the loss is deterministic); kept only if the validation error improves."""
        c, s = self.config, self.state
        method = self.polish["method"]
        if s["best_state"] is not None:
            self.model.load_state_dict(s["best_state"])
        g = torch.Generator().manual_seed(c.seed)
        n = self.polish["windows"]
        index = torch.randperm(len(self.data.train), generator=g)[:n]
        if self.data.in_memory:
            inputs, targets = self.data.gather(index)
        else:
            items = [self.data.train[i] for i in index.tolist()]
            inputs = torch.stack([a for a, _ in items]).to(self.device)
            targets = torch.stack([b for _, b in items]).to(self.device)
        inputs = inputs.to(self.device)
        targets = targets.to(self.device)
        self.model.eval()
        k = self.polish["unroll"]
        self._say(f"fit: polish by {method} on {n} windows, K = {k}")

        def record(loss: float) -> None:
            s["step"] += 1
            self.history.append(
                {"step": s["step"], "epoch": s["epoch"], "unroll": k, "lr": 1.0, "loss": loss}
            )
            bar.set_postfix(polish=f"{loss:.3e}", refresh=False)
            if self.callback is not None:
                self.callback(s["step"], loss)

        steps = self.polish["steps"]
        stall = (STALL_WINDOW, c.polish_stall) if c.polish_stall else None
        if method == "lm":
            losses = lm_polish(
                self.model, inputs, targets, self.data.dt, k, steps, callback=record, stall=stall
            )
        elif method == "gn":
            losses = gn_polish(
                self.model,
                inputs,
                targets,
                self.data.dt,
                k,
                steps,
                cg_iter=c.polish_iter,
                callback=record,
                stall=stall,
            )
        else:
            optimizer = torch.optim.LBFGS(
                self.model.parameters(),
                lr=1.0,
                max_iter=c.polish_iter,
                history_size=50,
                line_search_fn="strong_wolfe",
                tolerance_grad=1e-14,
                tolerance_change=1e-16,
            )

            def closure():
                optimizer.zero_grad(set_to_none=True)
                loss = self.loss(inputs, targets, self.data.dt, k)
                loss.backward()
                return loss

            losses = []
            for _ in range(steps):
                losses.append(float(optimizer.step(closure).detach()))
                record(losses[-1])
        s["polished"] = True
        before = s["best"]
        self._validate(bar)
        stall_stop = stall is not None and len(losses) < steps and stalled(losses, *stall)
        self.info["polish"].update(
            iterations=len(losses),
            final_loss=losses[-1] if losses else None,
            stopped=(
                "loss stalled"
                if stall_stop
                else "budget"
                if len(losses) >= steps
                else "converged (no damping lowers the loss)"
            ),
            kept=s["best"] < before,
        )
        done = self.info["polish"]
        self._say(
            f"fit: polish: {len(losses)} iterations ({done['stopped']}), loss "
            f"{done['final_loss']:.3e}, {'kept' if done['kept'] else 'not kept'}"
            if losses
            else "fit: polish: no iteration"
        )

    def _validate(self, bar) -> None:
        s, c = self.state, self.config
        if self.data.val_states is None:
            return
        self.model.eval()
        threshold = c.val_threshold if c.val_metric == "clipped" else None
        error = rollout_error(
            self.model, self.data.val_states.to(self.device), self.data.dt, threshold
        )
        error = distributed.from_main(self.ctx, error, self.device)
        self.evaluations.append({"epoch": s["epoch"], "step": s["step"], "val_error": error})
        if bar is not None:
            bar.set_postfix(val=f"{error:.3e}", refresh=True)
        if error < s["best"]:
            s["best"], s["best_epoch"], s["bad"] = error, s["epoch"], 0
            s["best_state"] = {
                k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()
            }
        else:
            s["bad"] += 1
            if c.patience is not None and s["bad"] >= c.patience:
                s["stopped_early"] = True

    # --- persistence --------------------------------------------------------------------------
    def _checkpoint(self) -> None:
        if not self.config.checkpoint or not self.ctx.main:
            return
        state = {**self.state, "history": self.history, "evaluations": self.evaluations}
        save_checkpoint(
            self.config.checkpoint,
            self.model,
            self.optimizer,
            self.scheduler,
            self.scaler,
            state,
            self.config.to_dict(),
        )

    def _restore(self, data: dict) -> None:
        # older checkpoints lack these settings (they ran without stall stopping, which only
        # ends a finish early, so resuming them with the current value is allowed)
        saved = {
            "polish_method": "lbfgs",
            "polish_stall": self.config.polish_stall,
            **data["config"],
        }
        differ = [k for k in _RUN_KEYS if _plain(saved.get(k)) != _plain(getattr(self.config, k))]
        if differ:
            raise ValueError(
                f"cannot resume {self.config.checkpoint!r}: settings differ from "
                f"the checkpointed run ({', '.join(differ)})"
            )
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
        summary = {
            "model": type(self.model).name,
            "config": self.config.to_dict(),
            "training_info": jsonable(self.info, where="training_info"),
        }
        if result is not None:
            summary.update(result.summary())
        evaluations = [{**e, "val_error": jsonable(e["val_error"])} for e in self.evaluations]
        write_logs(Path(self.config.log), self.history, evaluations, summary)


def _dtype(setting: str, data_dtype: torch.dtype):
    if setting == "float32":
        return torch.float32
    if setting == "float64":
        return torch.float64
    return torch.float64 if data_dtype in (torch.float64, torch.complex128) else None


def _why_dtype(config) -> str:
    return "float64 data" if config.precision == "auto" else "`precision` setting"


def _site_shared(model) -> bool:
    """True when the model's network shares one weight vector across sites (a stencil)."""
    return any(getattr(m, "stencil", None) is not None for m in model.modules())


def _check_match(model, data) -> None:
    """The model's state shape, kind and step against the data's, each named when wrong."""
    if tuple(model.state_shape) != data.state_shape:
        raise ValueError(
            f"`model` has state_shape {tuple(model.state_shape)}, the data "
            f"{data.path!r} hold states of shape {data.state_shape}"
        )
    if model.complex_state != data.dtype.is_complex:
        kind = "complex" if data.dtype.is_complex else "real"
        raise ValueError(
            f"`model` takes {'complex' if model.complex_state else 'real'} "
            f"states, the data {data.path!r} are {kind} ({data.dtype})"
        )
    if model.dt is not None and not math.isclose(model.dt, data.dt, rel_tol=1e-9):
        raise ValueError(
            f"the model's `dt` = {model.dt:g} differs from the data's step "
            f"frame_step·dt_save = {data.dt:g}; set `frame_step` to match"
        )


def _polish_plan(model, config, data, linear) -> dict:
    """Which second-order finish runs, on how many windows, for how many iterations, and why.
    A finish the model cannot take (dense LM on too many parameters) is refused here, before
    any training, naming the setting."""
    method = config.polish_method
    k = config.unroll
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    per_window = k * math.prod(data.state_shape) * (2 if data.dtype.is_complex else 1)
    windows = min(config.polish_windows, len(data.train))
    plan = {"method": method, "unroll": k, "windows": windows, "params": n_params}
    if linear == "resnet":
        return {
            "method": "lstsq",
            "reason": "linear in its parameters: one-step least squares is exact",
            "params": n_params,
        }
    if linear == "node":
        plan["unroll"] = 1
        per_window //= k
    if method == "none" or config.polish_steps == 0:
        return {
            "method": "none",
            "reason": "switched off (`polish_steps` = 0 or `polish_method` = 'none')",
        }
    if method != "auto":
        plan["reason"] = "`polish_method` setting"
        if method == "lm":
            _check_dense(n_params, windows * per_window, windows)
    elif data.dtype.is_complex or model.complex_state:
        return {"method": "none", "reason": "auto: complex states (no automatic polish)"}
    elif not (
        type(model).vmappable
        and (
            type(model)._functional_step is not LearnedStepper._functional_step
            or not getattr(model, "method", None)
        )
    ):
        plan.update(
            method="lbfgs",
            reason="auto: the step cannot be vmapped (adaptive "
            "solver or Newton solve): L-BFGS with strong-Wolfe line search",
        )
    else:
        dense = int(DENSE_FLOPS // max(1, per_window * n_params**2))
        if n_params <= MAX_PARAMS and dense >= min(windows, MIN_DENSE_WINDOWS):
            plan.update(
                method="lm",
                windows=min(windows, dense),
                reason=f"auto: {n_params} parameters: dense Levenberg–Marquardt "
                f"(normal equations within {DENSE_FLOPS:.0e} flops per iteration)",
            )
        else:
            plan.update(
                method="gn",
                reason=f"auto: {n_params} parameters: matrix-free "
                "Gauss–Newton–CG (Jacobian-vector products; the dense normal "
                f"equations exceed {DENSE_FLOPS:.0e} flops on {MIN_DENSE_WINDOWS} "
                "windows)",
            )
    if config.polish_steps is not None:
        plan["steps"] = config.polish_steps
        plan["steps_reason"] = "`polish_steps` setting"
    elif plan["method"] == "lm" and config.epochs is None and linear is None:
        plan["steps"] = LM_STEPS
        plan["steps_reason"] = (
            f"auto: at most {LM_STEPS} dense iterations after the AdamW "
            "warm-up (the finish, not AdamW, sets the accuracy)"
        )
    else:
        plan["steps"] = POLISH_STEPS
        plan["steps_reason"] = (
            f"auto: {POLISH_STEPS} iterations ("
            + (
                "from the least-squares start"
                if linear == "node"
                else "after the `epochs` set"
                if config.epochs is not None
                else f"{plan['method']} finish"
            )
            + ")"
        )
    if plan["method"] in ("lm", "gn") and config.polish_stall:
        plan["stall"] = (
            f"stop when the loss falls by less than {config.polish_stall:g} of "
            f"itself over {STALL_WINDOW} iterations"
        )
    return plan


def _check_dense(n_params: int, n_residuals: int, windows: int) -> None:
    if n_params > MAX_PARAMS:
        raise ValueError(
            f"`polish_method` = 'lm' builds {n_params}×{n_params} normal "
            f"equations; use it for models of at most {MAX_PARAMS} parameters, "
            "or 'gn' / 'auto'"
        )
    if n_residuals * n_params > MAX_JACOBIAN:
        raise ValueError(
            f"`polish_method` = 'lm' would build a {n_residuals}×{n_params} "
            f"Jacobian; lower `polish_windows` (now {windows}) or use 'gn'"
        )


def _epochs_plan(config, polish: dict, per_epoch: int) -> tuple[int, str]:
    """AdamW epochs and why: the setting, a warm-up before a dense finish, or the default."""
    if config.epochs is not None:
        return config.epochs, f"{config.epochs} (`epochs` setting)"
    if polish["method"] == "lm":
        epochs = max(1, math.ceil(WARMUP_STEPS / max(1, per_epoch)))
        return epochs, (
            f"{epochs} (auto: a warm-up of ≥ {WARMUP_STEPS} AdamW steps, "
            f"{per_epoch} per epoch, before the dense Levenberg–Marquardt finish"
            "; longer AdamW runs leave LM worse minima)"
        )
    return EPOCHS, f"{EPOCHS} (auto: no dense finish follows)"


def _plain(value):
    return list(value) if isinstance(value, tuple) else value

"""The per-sample loop: each sample accepts, rejects and sizes its own step (as torchode).

Every iteration steps the samples still running, gathered into one batch (no gather while
all run); a sample that has reached the end of ``t_span`` or failed stops being stepped. The
stepper receives ``t`` and ``dt`` as float64 tensors of shape (n_running,).
"""

from __future__ import annotations

import math

import torch

from ..errors import ConvergenceError, Status
from .control import RUNNING, Controller, Trial, error_ratio, failure


def _rows(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return mask.reshape(-1, *[1] * (like.dim() - 1))


def run(
    trial: Trial,
    ctrl: Controller,
    x0,
    f0,
    t0: float,
    t1: float,
    direction: float,
    outputs: list,
    h0: torch.Tensor,
    *,
    rtol,
    atol,
    max_steps,
    throw,
    bar,
    stepper,
):
    """Integrate; returns ``(states, status, n_accepted, n_rejected, nfev)``: states of shape
    (batch, len(outputs), *state_shape) (NaN where not reached), the rest of shape (batch,)."""
    B = x0.shape[0]
    dev = x0.device
    f64 = dict(dtype=torch.float64, device=dev)
    t_out = torch.tensor(outputs, **f64)
    x, f_cur, h = x0, f0, h0.to(**f64)
    t = torch.full((B,), t0, **f64)
    toward = torch.tensor(direction * math.inf, **f64)
    prev = torch.ones(B, **f64)
    after_reject = torch.zeros(B, dtype=torch.bool, device=dev)
    status = torch.full((B,), RUNNING, dtype=torch.long, device=dev)
    last_failure = torch.full((B,), int(Status.STEP_FLOOR), dtype=torch.long, device=dev)
    n_acc = torch.zeros(B, dtype=torch.long, device=dev)
    n_try = torch.zeros_like(n_acc)
    nfev = torch.zeros_like(n_acc)
    nfev_all = 0  # evaluations while every sample ran (added to all at the end)
    next_out = torch.zeros_like(n_acc)
    saved_rows, saved_cols, saved = [], [], []
    if outputs[0] == t0:
        next_out += 1
        saved_rows.append(torch.arange(B, device=dev))
        saved_cols.append(torch.zeros(B, dtype=torch.long, device=dev))
        saved.append(x0)
    target = t_out[next_out.clamp(max=len(outputs) - 1)]
    all_rows = torch.arange(B, device=dev)
    idx, n_running = None, B  # idx: rows still running, None while all are
    reached = t0
    while n_running:

        def take(v, idx=idx):
            return v if idx is None or v is None else v.index_select(0, idx)

        xa, ta, ha, fa, tg = take(x), take(t), take(h), take(f_cur), take(target)
        remaining = (tg - ta).abs_()
        landing = ha >= remaining
        h_try = torch.where(landing, remaining, ha)
        # the step floor, relative to the current t (scipy's): 10·|nextafter(t, ±inf) − t|
        spacing = (torch.nextafter(ta, toward) - ta).abs_().mul_(10)
        bad = (take(n_try) >= max_steps) | ((h_try < spacing) & ~landing)
        if bool(bad.any()):
            fail = torch.where(take(n_try) >= max_steps, int(Status.MAX_STEPS), take(last_failure))
            i = int(bad.nonzero()[0])
            if throw:
                raise failure(
                    int(fail[i]),
                    t=float(ta[i]),
                    h=float(h_try[i]),
                    t1=t1,
                    stepper=stepper,
                    max_steps=max_steps,
                    sample=i if idx is None else int(idx[i]),
                )
            rows = all_rows if idx is None else idx
            status = status.index_copy(0, rows, torch.where(bad, fail, take(status)))
            idx = (status == RUNNING).nonzero().squeeze(1)
            n_running = idx.numel()
            continue  # the failed samples leave the batch
        before = stepper.nfev
        try:
            x_new, err, f_new = trial(xa, ta, direction * h_try, fa)
            ratio = error_ratio(err, xa, x_new, rtol, atol).nan_to_num_(
                nan=math.inf, posinf=math.inf
            )
            kind = torch.where(ratio < math.inf, int(Status.STEP_FLOOR), int(Status.NON_FINITE))
        except ConvergenceError:  # a batched solve fails as a whole: every sample retries
            x_new, f_new = xa, None
            ratio = torch.full_like(ta, math.inf)
            kind = torch.full_like(n_acc if idx is None else idx, int(Status.NEWTON_FAILURE))
        spent = stepper.nfev - before
        accept = ratio <= 1.0
        h_new = h_try * ctrl.factors(ratio, take(prev), accept, take(after_reject))
        t_new = torch.where(
            accept, torch.where(landing, tg, torch.add(ta, h_try, alpha=direction)), ta
        )
        x_upd = torch.where(_rows(accept, xa), x_new, xa)
        f_upd = None if fa is None or f_new is None else torch.where(_rows(accept, fa), f_new, fa)
        landed = accept & landing
        if idx is None:
            x, t, h = x_upd, t_new, h_new
            if f_upd is not None:
                f_cur = f_upd
            if ctrl.kp:
                prev = torch.where(accept, ratio.clamp(min=1e-4), prev)
            after_reject = ~accept
            last_failure = kind
            n_acc += accept
            n_try += 1
            nfev_all += spent
            sel = all_rows
        else:
            x, t, h = (
                x.index_copy(0, idx, x_upd),
                t.index_copy(0, idx, t_new),
                h.index_copy(0, idx, h_new),
            )
            if f_upd is not None:
                f_cur = f_cur.index_copy(0, idx, f_upd)
            if ctrl.kp:
                prev = prev.index_copy(
                    0, idx, torch.where(accept, ratio.clamp(min=1e-4), take(prev))
                )
            after_reject = after_reject.index_copy(0, idx, ~accept)
            last_failure = last_failure.index_copy(0, idx, kind)
            n_acc = n_acc.index_add(0, idx, accept.long())
            n_try = n_try.index_add(0, idx, torch.ones_like(idx))
            nfev = nfev.index_add(0, idx, torch.full_like(idx, spent))
            sel = idx
        if bool(landed.any()):
            which = landed.nonzero().squeeze(1)
            rows_ = sel.index_select(0, which)
            saved_rows.append(rows_)
            saved_cols.append(next_out.index_select(0, rows_))
            saved.append(x_upd.index_select(0, which))
            next_out = next_out.index_add(0, rows_, torch.ones_like(rows_))
            target = t_out[next_out.clamp(max=len(outputs) - 1)]
            done = next_out >= len(outputs)
            if bool(done.any()):
                status = torch.where(done & (status == RUNNING), int(Status.SUCCESS), status)
                idx = (status == RUNNING).nonzero().squeeze(1)
                n_running = idx.numel()
                if n_running == B:
                    idx = None
        if bar is not None:
            new_reached = float((t - t0).abs().min())
            bar.update(new_reached - reached)
            reached = new_reached
    states = torch.full((B, len(outputs), *x0.shape[1:]), math.nan, dtype=x0.dtype, device=dev)
    if saved:
        states = states.index_put((torch.cat(saved_rows), torch.cat(saved_cols)), torch.cat(saved))
    return states, status, n_acc, n_try - n_acc, nfev + nfev_all

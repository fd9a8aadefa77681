"""The per-sample loop: each sample accepts, rejects and sizes its own step (as torchode).

Every iteration steps the samples still running, gathered into one batch (no gather while
all run); a sample that has reached the end of ``t_span`` or failed stops being stepped. The
stepper receives ``t`` and ``dt`` as float64 tensors of shape (n_running,).
"""

from __future__ import annotations

import math

import torch

from ..errors import ConvergenceError, Status
from .control import RUNNING, Controller, Trial, error_ratio, failure, step_floor


def _rows(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return mask.reshape(-1, *[1] * (like.dim() - 1))


def run(trial: Trial, ctrl: Controller, x0, f0, t0: float, t1: float, direction: float,
        outputs: list, h0: torch.Tensor, *, rtol, atol, max_steps, throw, bar, stepper):
    """Integrate; returns ``(states, status, n_accepted, n_rejected, nfev)``: states of shape
    (batch, len(outputs), *state_shape) (NaN where not reached), the rest of shape (batch,)."""
    B = x0.shape[0]
    f64 = dict(dtype=torch.float64, device=x0.device)
    t_out = torch.tensor(outputs, **f64)
    x, f_cur, h = x0, f0, h0.to(**f64)
    t = torch.full((B,), t0, **f64)
    prev = torch.ones(B, **f64)
    after_reject = torch.zeros(B, dtype=torch.bool, device=x0.device)
    status = torch.full((B,), RUNNING, dtype=torch.long, device=x0.device)
    last_failure = torch.full((B,), int(Status.STEP_FLOOR), dtype=torch.long, device=x0.device)
    n_acc = torch.zeros(B, dtype=torch.long, device=x0.device)
    n_rej = torch.zeros_like(n_acc)
    nfev = torch.zeros_like(n_acc)
    next_out = torch.zeros_like(n_acc)
    saved_rows, saved_cols, saved = [], [], []
    if outputs[0] == t0:
        next_out += 1
        saved_rows.append(torch.arange(B, device=x0.device))
        saved_cols.append(torch.zeros(B, dtype=torch.long, device=x0.device))
        saved.append(x0)
    reached = t0
    while True:
        running = status == RUNNING
        idx = None if bool(running.all()) else running.nonzero().squeeze(1)
        if idx is not None and idx.numel() == 0:
            break

        def take(v, idx=idx):
            return v if idx is None or v is None else v.index_select(0, idx)

        xa, ta, ha, fa = take(x), take(t), take(h), take(f_cur)
        target = t_out[take(next_out)]
        remaining = (target - ta).abs()
        landing = ha >= remaining
        h_try = torch.where(landing, remaining, ha)
        fail = torch.where(take(n_acc + n_rej) >= max_steps, int(Status.MAX_STEPS), RUNNING)
        fail = torch.where((fail == RUNNING) & ~landing & (h_try < step_floor(ta, direction)),
                           take(last_failure), fail)
        failing = fail != RUNNING
        if bool(failing.any()):
            i = int(failing.nonzero()[0])
            sample = i if idx is None else int(idx[i])
            if throw:
                raise failure(int(fail[i]), t=float(ta[i]), h=float(h_try[i]), t1=t1,
                              stepper=stepper, max_steps=max_steps, sample=sample)
            status = status.index_put((idx if idx is not None else torch.arange(B),),
                                      torch.where(failing, fail, RUNNING))
            continue  # the failed samples leave the batch
        before = stepper.nfev
        try:
            x_new, err, f_new = trial(xa, ta, direction * h_try, fa)
            ratio = error_ratio(err, xa, x_new, rtol, atol)
            finite = torch.isfinite(ratio)
            ratio = torch.where(finite, ratio, math.inf)
            kind = torch.where(finite, int(Status.STEP_FLOOR), int(Status.NON_FINITE))
        except ConvergenceError:  # a batched solve fails as a whole: every sample retries
            x_new, f_new = xa, None
            ratio = torch.full_like(ta, math.inf)
            kind = torch.full_like(fail, int(Status.NEWTON_FAILURE))
        accept = ratio <= 1.0
        h_new = h_try * ctrl.factors(ratio, take(prev), accept, take(after_reject))
        t_new = torch.where(accept, torch.where(landing, target, ta + direction * h_try), ta)
        rows = _rows(accept, xa)
        x_upd = torch.where(rows, x_new, xa)
        f_upd = None if fa is None or f_new is None else torch.where(_rows(accept, fa), f_new, fa)
        landed = accept & landing
        if idx is None:
            x, t, h = x_upd, t_new, h_new
            if f_upd is not None:
                f_cur = f_upd
            prev = torch.where(accept, ratio.clamp(min=1e-4), prev)
            after_reject = ~accept
            last_failure = torch.where(accept, int(Status.STEP_FLOOR), kind)
            n_acc += accept
            n_rej += ~accept
            nfev += stepper.nfev - before
            sel = torch.arange(B, device=x0.device)
        else:
            x, t, h = (x.index_copy(0, idx, x_upd), t.index_copy(0, idx, t_new),
                       h.index_copy(0, idx, h_new))
            if f_upd is not None:
                f_cur = f_cur.index_copy(0, idx, f_upd)
            prev = prev.index_copy(0, idx, torch.where(accept, ratio.clamp(min=1e-4), take(prev)))
            after_reject = after_reject.index_copy(0, idx, ~accept)
            last_failure = last_failure.index_copy(
                0, idx, torch.where(accept, int(Status.STEP_FLOOR), kind))
            n_acc = n_acc.index_add(0, idx, accept.long())
            n_rej = n_rej.index_add(0, idx, (~accept).long())
            nfev = nfev.index_add(0, idx, torch.full_like(idx, stepper.nfev - before))
            sel = idx
        if bool(landed.any()):
            which = landed.nonzero().squeeze(1)
            rows_ = sel.index_select(0, which)
            saved_rows.append(rows_)
            saved_cols.append(next_out.index_select(0, rows_))
            saved.append(x_upd.index_select(0, which))
            next_out = next_out.index_add(0, rows_, torch.ones_like(rows_))
            done = next_out >= len(outputs)
            status = torch.where(done & (status == RUNNING), int(Status.SUCCESS), status)
        if bar is not None:
            new_reached = float((t - t0).abs().min())
            bar.update(new_reached - reached)
            reached = new_reached
    states = torch.full((B, len(outputs), *x0.shape[1:]), math.nan, dtype=x0.dtype,
                        device=x0.device)
    if saved:
        states = states.index_put((torch.cat(saved_rows), torch.cat(saved_cols)),
                                  torch.cat(saved))
    return states, status, n_acc, n_rej, nfev

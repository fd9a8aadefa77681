"""Fixed-step rollout of any stepper."""

from __future__ import annotations

import torch

from . import _checks
from .errors import DivergenceError


def rollout(stepper, x0: torch.Tensor, dt: float, n_steps: int, t0: float = 0.0,
            save_every: int = 1, progress: bool = False) -> torch.Tensor:
    """Apply ``stepper`` ``n_steps`` times from ``x0``.

    Parameters
    ----------
    stepper : Stepper (or any callable ``(x, t, dt) -> x_next``)
    x0 : Tensor, shape (batch, *state_shape)
    dt : float, > 0
    n_steps : int, >= 0
    t0 : float
    save_every : int
        Keep every ``save_every``-th state (the initial state is always kept).
    progress : bool
        Show a progress bar.

    Returns
    -------
    Tensor, shape (batch, n_steps // save_every + 1, *state_shape)

    Raises
    ------
    DivergenceError
        When a state becomes non-finite; names the step and time, and carries the saved
        trajectory up to the last finite state as ``.trajectory``.
    """
    dt = _checks.positive("dt", dt)
    n_steps = _checks.positive_int("n_steps", n_steps, allow_zero=True)
    save_every = _checks.positive_int("save_every", save_every)
    step = _checks.step_function(stepper, x0, dt)
    t0 = float(t0)
    saved = [x0]
    x = x0
    bar = _progress(n_steps, progress, getattr(stepper, "name", "") or type(stepper).__name__)
    for n in range(1, n_steps + 1):
        x = step(x, t0 + (n - 1) * dt, dt)
        if not bool(torch.isfinite(x).all()):
            bar.close()
            raise DivergenceError(
                f"rollout diverged: non-finite state at step {n} (t = {t0 + n * dt:.6g}) "
                f"with dt = {dt:g}; reduce `dt` or use a more stable stepper",
                step=n, time=t0 + n * dt, trajectory=torch.stack(saved, dim=1),
            )
        if n % save_every == 0:
            saved.append(x)
        bar.update()
    bar.close()
    return torch.stack(saved, dim=1)


def _progress(total: int, enabled: bool, label: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not enabled, desc=f"rollout {label}", unit="step",
                leave=False)

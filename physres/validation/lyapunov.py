"""The largest Lyapunov exponent of a stepper's map ``x_{n+1} = Φ_dt(x_n)``.

Works for any stepper, known physics or learned, so an emulator's λ1 can be held against the
true system's: a good emulator of a chaotic flow reproduces the rate at which nearby states
separate, not only the short-time trajectory.
"""

from __future__ import annotations

import torch

from .. import _checks
from ..errors import DivergenceError

METHODS = ("auto", "jvp", "benettin")


def lyapunov_exponent(
    stepper,
    x0: torch.Tensor,
    dt: float,
    n_steps: int,
    *,
    t0: float = 0.0,
    transient: int = 0,
    method: str = "auto",
    eps: float | None = None,
    seed: int = 0,
    progress: bool = False,
) -> torch.Tensor:
    """Largest Lyapunov exponent, per unit time, of the map ``x ↦ stepper(x, t, dt)``.

    A tangent vector ``v`` is carried along the trajectory and renormalised every step;
    ``λ = Σ log‖v_{n+1}‖/‖v_n‖ / (n_steps · dt)`` (Benettin et al. 1980, Meccanica 15).

    Parameters
    ----------
    stepper : Stepper (or any callable ``(x, t, dt) -> x_next``)
    x0 : Tensor, shape (batch, *state_shape)
        Starting states; each sample gets its own exponent.
    dt : float
        Step size of the map (the exponent is divided by it, so it is per unit time).
    n_steps : int
        Steps over which the growth is averaged.
    t0 : float
        Time of ``x0`` (for non-autonomous fields).
    transient : int
        Steps taken first (tangent aligned, not scored), so the vector finds the most
        unstable direction and the state reaches the attractor.
    method : ``"auto"``, ``"jvp"`` or ``"benettin"``
        ``"jvp"``: exact tangent propagation ``v ← DΦ(x) v`` with forward-mode autodiff
        (``torch.func.jvp``); needs a differentiable step. ``"benettin"``: a second
        trajectory at distance ``eps·(1 + ‖x‖)``, rescaled back to that distance each step (both
        stepped in one call on the doubled batch, so the stepper must treat samples
        independently); needs nothing but the map and is several times cheaper (no autodiff
        per step).
        ``"auto"``: ``"benettin"`` for float64/complex128 states, where the finite separation
        is resolved to ~1e-7, and ``"jvp"`` for single precision.
    eps : float, optional
        Relative separation for ``"benettin"`` (default 1e-7 in float64, 1e-3 in float32).
    seed : int
        Seed of the random initial tangent direction.
    progress : bool
        Show a progress bar.

    Returns
    -------
    Tensor, shape (batch,), float64.

    Examples
    --------
    >>> step = physres.steppers.get("rk4", system.rhs)
    >>> lyapunov_exponent(step, x0, dt=0.01, n_steps=50_000, transient=1_000)
    """
    if method not in METHODS:
        raise ValueError(f"`method` must be one of {', '.join(METHODS)}, got {method!r}")
    if method == "auto":
        method = "benettin" if x0.dtype in (torch.float64, torch.complex128) else "jvp"
    dt = _checks.positive("dt", dt)
    n_steps = _checks.positive_int("n_steps", n_steps)
    transient = _checks.positive_int("transient", transient, allow_zero=True)
    step = _checks.step_function(stepper, x0, dt)
    real_dtype = x0.real.dtype if x0.is_complex() else x0.dtype
    if eps is None:
        eps = 1e-7 if real_dtype == torch.float64 else 1e-3
    eps = _checks.positive("eps", eps)

    gen = torch.Generator(device="cpu").manual_seed(seed)
    v = torch.randn(x0.shape, generator=gen, dtype=real_dtype).to(x0.device)
    if x0.is_complex():
        v = torch.complex(v, torch.randn(x0.shape, generator=gen, dtype=real_dtype).to(x0.device))
    v = v / _norm(v)[_col(v)]

    from tqdm.auto import tqdm

    total = transient + n_steps
    log_growth = torch.zeros(x0.shape[0], dtype=torch.float64, device=x0.device)
    x = x0.detach()
    for n in tqdm(range(total), total=total, disable=not progress, desc="lyapunov", leave=False):
        t = t0 + n * dt
        if method == "jvp":
            with torch.no_grad():  # forward-mode only: no graph to the model's parameters
                x_next, w = torch.func.jvp(lambda y, t=t: step(y, t, dt), (x,), (v,))
            size = _norm(w)
        else:
            with torch.no_grad():  # both trajectories in one call: one step of a 2·batch
                d0 = eps * (1 + _norm(x))
                both = step(torch.cat([x, x + d0[_col(x)] * v]), t, dt)
                x_next, w = both[: x.shape[0]], both[x.shape[0] :] - both[: x.shape[0]]
                size = _norm(w) / d0
        x_next, w = x_next.detach(), w.detach()
        if not (
            bool(torch.isfinite(x_next).all())
            and bool(torch.isfinite(size).all())
            and bool((size > 0).all())
        ):
            raise DivergenceError(
                f"lyapunov_exponent: non-finite or degenerate state at step {n + 1} "
                f"(t = {t + dt:.6g}); reduce `dt` or check the stepper",
                step=n + 1,
                time=t + dt,
            )
        if n >= transient:
            log_growth += torch.log(size.to(torch.float64))
        v = w / _norm(w)[_col(w)]
        x = x_next
    return log_growth / (n_steps * dt)


def _norm(v: torch.Tensor) -> torch.Tensor:
    """Euclidean norm per sample: (batch, *state) → (batch,), real."""
    return v.abs().reshape(v.shape[0], -1).norm(dim=1)


def _col(x: torch.Tensor):
    return (...,) + (None,) * (x.dim() - 1)


__all__ = ["lyapunov_exponent"]

"""Levenberg–Marquardt polish: full-batch Gauss–Newton on the K-step residuals of a small model.

Emulators of smooth low-dimensional systems need one-step errors of ~1e-5 to stay accurate over
a thousand steps; first-order methods (and L-BFGS) stall far above that, while Gauss–Newton
steps with Marquardt damping drive small networks to the noise floor of the data (Levenberg,
1944; Marquardt, 1963; Hagan & Menhaj, 1994). Two ways to solve the damped normal equations
``(JᵀJ + μI) δ = −Jᵀr`` share one damped loop (:func:`_damped`):

* :func:`lm_polish`, dense: the Jacobian is built per sample with ``torch.func`` (``vmap`` of
  ``jacrev`` through the model's ``_functional_step``, so the step must be vmappable; for a
  NeuralODE: a fixed-grid method) and the system is solved by Cholesky;
* :func:`gn_polish`, matrix-free: conjugate gradients on ``Jv`` / ``Jᵀu`` products (Martens
  2010), for models too large for the dense normal equations.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.func import functional_call, jacrev, jvp, vjp, vmap

# Explicit normal equations are (n_params, n_params): beyond this, use L-BFGS.
MAX_PARAMS = 20_000
# The Jacobian is (residuals, n_params): at most this many entries (1.6 GB in float64).
MAX_JACOBIAN = 200_000_000
# fit's automatic finish is dense when one iteration's normal equations cost at most this many
# flops (n_residuals · n_params²); beyond it the matrix-free Gauss–Newton–CG.
DENSE_FLOPS = 4e9
# ... and when that budget still holds at least this many windows.
MIN_DENSE_WINDOWS = 256


def dense_windows(n_params: int, residuals_per_window: int) -> int:
    """How many windows one dense iteration may take within :data:`DENSE_FLOPS`."""
    return int(DENSE_FLOPS // max(1, residuals_per_window * n_params**2))


class _Unroll(nn.Module):
    """``k`` steps of the model from ``x`` (batch, *S) → (batch, k, *S); ``functional``
    uses the model's vmappable step."""

    def __init__(self, model, dt: float, k: int):
        super().__init__()
        self.model, self.dt, self.k = model, dt, k

    def forward(self, x, functional: bool = False):
        step = self.model._functional_step if functional else self.model._step
        out = []
        for _ in range(self.k):
            x = step(x, 0.0, self.dt)
            out.append(x)
        return torch.stack(out, 1)


class _Residuals:
    """The K-step residuals ``(model^k(x0) − y)/σ`` as a function of the flat parameter
    vector ``theta`` (real view of complex states, flattened)."""

    def __init__(self, model, inputs, targets, dt: float, k: int):
        if targets.shape[1] < k:
            raise ValueError(f"`targets` holds {targets.shape[1]} steps, fewer than `k` = {k}")
        self.named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self.keys = ["model." + n for n, _ in self.named]
        self.shapes = [p.shape for _, p in self.named]
        self.sizes = [p.numel() for _, p in self.named]
        self.n_params = sum(self.sizes)
        self.wrapper = _Unroll(model, float(dt), int(k))
        self.x0, self.y = inputs[:, -1], targets[:, :k]
        real = self.x0.real.dtype if self.x0.is_complex() else self.x0.dtype
        self.std = model.norm_std.to(real)
        self.count = self.y.numel()  # the loss averages |r|² over (complex) elements

    def theta(self) -> torch.Tensor:
        return torch.cat([p.detach().reshape(-1) for _, p in self.named])

    def __call__(self, theta, x=None, target=None, functional=True):
        x = self.x0 if x is None else x
        target = self.y if target is None else target
        params = {
            key: t.view(s)
            for key, t, s in zip(self.keys, theta.split(self.sizes), self.shapes, strict=True)
        }
        r = (functional_call(self.wrapper, params, (x, functional)) - target) / self.std
        return (torch.view_as_real(r) if r.is_complex() else r).reshape(-1)

    def loss(self, r) -> float:
        return float(r @ r) / self.count

    @torch.no_grad()
    def write(self, theta) -> None:
        for (_, p), t, s in zip(self.named, theta.split(self.sizes), self.shapes, strict=True):
            p.copy_(t.view(s))


def _damped(
    res: _Residuals,
    linearize,
    steps: int,
    *,
    mu: float,
    mu_min: float,
    max_tries: int | None,
    callback,
    stall,
    functional: bool,
) -> list[float]:
    """The damped Gauss–Newton loop both solvers share.

    ``linearize(theta, r)`` returns ``solve(mu)``: the step ``δ`` of ``(JᵀJ + μI) δ = −Jᵀr`` at
    ``theta`` (None when the damped system cannot be solved). A step is accepted when it lowers
    the loss (then ``μ ← μ/3``), else ``μ ← 4μ`` and retried (``max_tries`` times, or until
    ``μ`` reaches 1e12). Stops after ``steps`` iterations, when no damping lowers the loss
    (converged), or when ``stall = (window, ratio)`` is set and the loss fell by less than the
    fraction ``ratio`` over the last ``window`` iterations. The model receives the final
    weights; returns the loss after each iteration.
    """
    theta = res.theta()
    with torch.no_grad():
        r = res(theta, functional=functional)
    cost = res.loss(r)
    losses: list[float] = []
    for _ in range(steps):
        solve = linearize(theta, r)
        accepted, tries = False, 0
        while mu < 1e12 and (max_tries is None or tries < max_tries):
            step = solve(mu)
            if step is not None:
                with torch.no_grad():
                    trial = theta + step
                    r_trial = res(trial, functional=functional)
                trial_cost = res.loss(r_trial)
                if math.isfinite(trial_cost) and trial_cost < cost:
                    theta, r, cost = trial, r_trial, trial_cost
                    mu = max(mu / 3, mu_min)
                    accepted = True
                    break
            mu *= 4
            tries += 1
        losses.append(cost)
        if callback is not None:
            callback(cost)
        if not accepted:  # no damping lowers the loss: converged (to the data's noise floor)
            break
        if stall is not None and stalled(losses, *stall):
            break
    res.write(theta)
    return losses


def stalled(losses: list[float], window: int, ratio: float) -> bool:
    """True when the loss fell by less than the fraction ``ratio`` over ``window`` iterations."""
    return len(losses) > window and losses[-1] > (1 - ratio) * losses[-1 - window]


def lm_polish(
    model,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    dt: float,
    k: int,
    steps: int,
    *,
    callback=None,
    mu: float = 1e-3,
    stall: tuple[int, float] | None = None,
) -> list[float]:
    """Minimise the K-step loss of ``model`` over a fixed batch by Levenberg–Marquardt.

    Parameters
    ----------
    model : LearnedStepper, updated in place (its trainable parameters)
    inputs : Tensor, shape (batch, input_len, *state_shape); the last frame starts the unroll
    targets : Tensor, shape (batch, >= k, *state_shape)
    dt : float; k : int, steps unrolled
    steps : int, Levenberg–Marquardt iterations at most
    callback : callable ``(loss)``, optional, after every iteration
    mu : float, initial damping (divided by 3 on success, multiplied by 4 on failure)
    stall : ``(window, ratio)``, optional: stop when the loss fell by less than the fraction
        ``ratio`` over the last ``window`` iterations

    Returns
    -------
    list of float : the loss (as :func:`~physres.training.unrolled_loss`) after each iteration
    """
    res = _Residuals(model, inputs, targets, dt, k)
    n_params = res.n_params
    if n_params > MAX_PARAMS:
        raise ValueError(
            f"`polish_method` = 'lm' builds {n_params}×{n_params} normal equations;"
            f" use it for models of at most {MAX_PARAMS} parameters, or 'lbfgs'"
        )
    n_residuals = res.y.numel() * (2 if res.y.is_complex() else 1)
    if n_residuals * n_params > MAX_JACOBIAN:
        raise ValueError(
            f"`polish_method` = 'lm' would build a {n_residuals}×{n_params} "
            f"Jacobian; lower `polish_windows` (now {targets.shape[0]}) or use "
            "'lbfgs'"
        )

    def per_sample(theta, x, target):
        return res(theta, x[None], target[None])

    def linearize(theta, r):
        try:
            jac = vmap(jacrev(per_sample), in_dims=(None, 0, 0))(theta, res.x0, res.y)
        except RuntimeError as exc:
            raise ValueError(
                f"`polish_method` = 'lm' needs a step that torch.func can vmap, and "
                f"{type(model).__name__} failed ({str(exc).splitlines()[0][:80]}); for "
                "NeuralODE use a fixed-grid method (euler, midpoint, rk4), or polish with "
                "'lbfgs'"
            ) from None
        jac = jac.reshape(-1, n_params).detach()
        a, g = jac.T @ jac, jac.T @ r
        eye = torch.eye(n_params, dtype=a.dtype, device=a.device)

        def solve(mu):
            chol, info = torch.linalg.cholesky_ex(a + mu * eye)
            return -torch.cholesky_solve(g[:, None], chol)[:, 0] if int(info) == 0 else None

        return solve

    # the batched residual runs the ordinary step (faster than the vmappable one)
    return _damped(
        res,
        linearize,
        steps,
        mu=mu,
        mu_min=1e-15,
        max_tries=None,
        callback=callback,
        stall=stall,
        functional=False,
    )


def gn_polish(
    model,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    dt: float,
    k: int,
    steps: int,
    *,
    cg_iter: int = 20,
    callback=None,
    mu: float = 1e-3,
    stall: tuple[int, float] | None = None,
) -> list[float]:
    """Matrix-free Levenberg–Marquardt (Gauss–Newton–CG) on the K-step residuals.

    Each step solves ``(JᵀJ + μI) δ = −Jᵀr`` by ``cg_iter`` conjugate-gradient iterations,
    with ``Jv`` by forward-mode (``torch.func.jvp``) and ``Jᵀu`` by reverse-mode
    (``torch.func.vjp``) products: memory and cost per iteration are a few forward passes, so
    the model size is not limited as in :func:`lm_polish` (Martens 2010, "Deep learning via
    Hessian-free optimization"). Arguments and return value as :func:`lm_polish`.
    """
    res = _Residuals(model, inputs, targets, dt, k)

    def linearize(theta, r):
        try:
            _, vjp_fn = vjp(res, theta)
            jvp(res, (theta,), (torch.zeros_like(theta),))  # forward mode works?
        except RuntimeError as exc:
            raise ValueError(
                f"`polish_method` = 'gn' needs a step that torch.func can differentiate "
                f"forward, and {type(model).__name__} failed "
                f"({str(exc).splitlines()[0][:80]}); polish with 'lbfgs'"
            ) from None
        g = vjp_fn(r)[0].detach()

        def solve(mu):
            return _cg(
                lambda v: vjp_fn(jvp(res, (theta,), (v,))[1])[0].detach() + mu * v, -g, cg_iter
            )

        return solve

    return _damped(
        res,
        linearize,
        steps,
        mu=mu,
        mu_min=1e-12,
        max_tries=8,
        callback=callback,
        stall=stall,
        functional=True,
    )


def _cg(matvec, b: torch.Tensor, iters: int) -> torch.Tensor:
    """Conjugate gradients for ``A x = b`` (A symmetric positive definite), from x = 0."""
    x = torch.zeros_like(b)
    r = b.clone()
    p = r.clone()
    rr = r @ r
    tol = 1e-20 * float(b @ b)
    for _ in range(iters):
        ap = matvec(p)
        alpha = rr / (p @ ap)
        x = x + alpha * p
        r = r - alpha * ap
        rr_new = r @ r
        if float(rr_new) <= tol:
            break
        p = r + (rr_new / rr) * p
        rr = rr_new
    return x

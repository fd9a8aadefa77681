"""Levenberg–Marquardt polish: full-batch Gauss–Newton on the K-step residuals of a small model.

Emulators of smooth low-dimensional systems need one-step errors of ~1e-5 to stay accurate over
a thousand steps; first-order methods (and L-BFGS) stall far above that, while Gauss–Newton
steps with Marquardt damping drive small networks to the noise floor of the data (Levenberg,
1944; Marquardt, 1963; Hagan & Menhaj, 1994). The Jacobian of the residuals is built per sample
with ``torch.func`` (``vmap`` of ``jacrev`` through the model's ``_functional_step``), so the
model's step must be vmappable (for a NeuralODE: a fixed-grid method); the damped normal
equations are solved by Cholesky.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.func import functional_call, jacrev, vmap

# Explicit normal equations are (n_params, n_params): beyond this, use L-BFGS.
MAX_PARAMS = 20_000
# The Jacobian is (residuals, n_params): at most this many entries (1.6 GB in float64).
MAX_JACOBIAN = 200_000_000


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


def lm_polish(model, inputs: torch.Tensor, targets: torch.Tensor, dt: float, k: int,
              steps: int, *, callback=None, mu: float = 1e-3) -> list[float]:
    """Minimise the K-step loss of ``model`` over a fixed batch by Levenberg–Marquardt.

    Parameters
    ----------
    model : LearnedStepper, updated in place (its trainable parameters)
    inputs : Tensor, shape (batch, input_len, *state_shape); the last frame starts the unroll
    targets : Tensor, shape (batch, >= k, *state_shape)
    dt : float; k : int, steps unrolled
    steps : int, Levenberg–Marquardt iterations
    callback : callable ``(loss)``, optional, after every iteration
    mu : float, initial damping (divided by 3 on success, multiplied by 4 on failure)

    Returns
    -------
    list of float : the loss (as :func:`~physres.training.unrolled_loss`) after each iteration
    """
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    n_params = sum(p.numel() for _, p in named)
    if n_params > MAX_PARAMS:
        raise ValueError(f"`polish_method` = 'lm' builds {n_params}×{n_params} normal equations;"
                         f" use it for models of at most {MAX_PARAMS} parameters, or 'lbfgs'")
    if targets.shape[1] < k:
        raise ValueError(f"`targets` holds {targets.shape[1]} steps, fewer than `k` = {k}")
    n_residuals = targets[:, :k].numel() * (2 if targets.is_complex() else 1)
    if n_residuals * n_params > MAX_JACOBIAN:
        raise ValueError(f"`polish_method` = 'lm' would build a {n_residuals}×{n_params} "
                         f"Jacobian; lower `polish_windows` (now {targets.shape[0]}) or use "
                         "'lbfgs'")
    wrapper = _Unroll(model, float(dt), int(k))
    keys = ["model." + n for n, _ in named]
    shapes = [p.shape for _, p in named]
    sizes = [p.numel() for _, p in named]
    x0 = inputs[:, -1]
    y = targets[:, :k]
    real = x0.real.dtype if x0.is_complex() else x0.dtype
    std = model.norm_std.to(real)
    count = y.numel()  # the loss averages |r|² over (complex) elements

    def residual(theta, x, target, functional=False):
        params = {key: t.view(s) for key, t, s in zip(keys, theta.split(sizes), shapes,
                                                      strict=True)}
        r = (functional_call(wrapper, params, (x, functional)) - target) / std
        return (torch.view_as_real(r) if r.is_complex() else r).reshape(-1)

    def per_sample(theta, x, target):
        return residual(theta, x[None], target[None], functional=True)

    def loss_of(r) -> float:
        return float(r @ r) / count

    theta = torch.cat([p.detach().reshape(-1) for _, p in named])
    with torch.no_grad():
        r = residual(theta, x0, y)
    cost = loss_of(r)
    losses: list[float] = []
    eye = torch.eye(n_params, dtype=theta.dtype, device=theta.device)
    for _ in range(steps):
        try:
            jac = vmap(jacrev(per_sample), in_dims=(None, 0, 0))(theta, x0, y)
        except RuntimeError as exc:
            raise ValueError(
                f"`polish_method` = 'lm' needs a step that torch.func can vmap, and "
                f"{type(model).__name__} failed ({str(exc).splitlines()[0][:80]}); for "
                "NeuralODE use a fixed-grid method (euler, midpoint, rk4), or polish with "
                "'lbfgs'") from None
        jac = jac.reshape(-1, n_params).detach()
        a, g = jac.T @ jac, jac.T @ r
        accepted = False
        while mu < 1e12:
            chol, info = torch.linalg.cholesky_ex(a + mu * eye)
            if int(info) == 0:
                step = -torch.cholesky_solve(g[:, None], chol)[:, 0]
                with torch.no_grad():
                    trial = theta + step
                    r_trial = residual(trial, x0, y)
                trial_cost = loss_of(r_trial)
                if math.isfinite(trial_cost) and trial_cost < cost:
                    theta, r, cost = trial, r_trial, trial_cost
                    mu = max(mu / 3, 1e-15)
                    accepted = True
                    break
            mu *= 4
        losses.append(cost)
        if callback is not None:
            callback(cost)
        if not accepted:  # no damping lowers the loss: converged (to the data's noise floor)
            break
    with torch.no_grad():
        for (_, p), t, s in zip(named, theta.split(sizes), shapes, strict=True):
            p.copy_(t.view(s))
    return losses



def gn_polish(model, inputs: torch.Tensor, targets: torch.Tensor, dt: float, k: int,
              steps: int, *, cg_iter: int = 20, callback=None, mu: float = 1e-3) -> list[float]:
    """Matrix-free Levenberg–Marquardt (Gauss–Newton–CG) on the K-step residuals.

    Each step solves ``(JᵀJ + μI) δ = −Jᵀr`` by ``cg_iter`` conjugate-gradient iterations,
    with ``Jv`` by forward-mode (``torch.func.jvp``) and ``Jᵀu`` by reverse-mode
    (``torch.func.vjp``) products: memory and cost per iteration are a few forward passes, so
    the model size is not limited as in :func:`lm_polish` (Martens 2010, "Deep learning via
    Hessian-free optimization"). Arguments and return value as :func:`lm_polish`.
    """
    from torch.func import jvp, vjp

    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if targets.shape[1] < k:
        raise ValueError(f"`targets` holds {targets.shape[1]} steps, fewer than `k` = {k}")
    wrapper = _Unroll(model, float(dt), int(k))
    keys = ["model." + n for n, _ in named]
    shapes = [p.shape for _, p in named]
    sizes = [p.numel() for _, p in named]
    x0, y = inputs[:, -1], targets[:, :k]
    real = x0.real.dtype if x0.is_complex() else x0.dtype
    std = model.norm_std.to(real)
    count = y.numel()

    def residual(theta):
        params = {key: t.view(s) for key, t, s in zip(keys, theta.split(sizes), shapes,
                                                      strict=True)}
        r = (functional_call(wrapper, params, (x0, True)) - y) / std
        return (torch.view_as_real(r) if r.is_complex() else r).reshape(-1)

    theta = torch.cat([p.detach().reshape(-1) for _, p in named])
    with torch.no_grad():
        r = residual(theta)
    cost = float(r @ r) / count
    losses: list[float] = []
    for _ in range(steps):
        try:
            _, vjp_fn = vjp(residual, theta)
            jvp(residual, (theta,), (torch.zeros_like(theta),))  # forward mode works?
        except RuntimeError as exc:
            raise ValueError(
                f"`polish_method` = 'gn' needs a step that torch.func can differentiate "
                f"forward, and {type(model).__name__} failed "
                f"({str(exc).splitlines()[0][:80]}); polish with 'lbfgs'") from None
        g = vjp_fn(r)[0].detach()
        accepted = False
        for _ in range(8):
            step = _cg(lambda v, m=mu, b=vjp_fn, th=theta:
                       b(jvp(residual, (th,), (v,))[1])[0].detach() + m * v, -g, cg_iter)
            with torch.no_grad():
                trial = theta + step
                r_trial = residual(trial)
            trial_cost = float(r_trial @ r_trial) / count
            if math.isfinite(trial_cost) and trial_cost < cost:
                theta, r, cost = trial, r_trial, trial_cost
                mu = max(mu / 3, 1e-12)
                accepted = True
                break
            mu *= 4
        losses.append(cost)
        if callback is not None:
            callback(cost)
        if not accepted:
            break
    with torch.no_grad():
        for (_, p), t, s in zip(named, theta.split(sizes), shapes, strict=True):
            p.copy_(t.view(s))
    return losses


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

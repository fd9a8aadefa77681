"""Linear least squares for models linear in their parameters (polynomial residual blocks).

A :class:`~physres.models.ResNetEmulator` of one residual block whose network is a
:class:`~physres.models.PolynomialField` computes ``z + α·W·φ(z)``: the one-step loss is a
linear least-squares problem in ``W``, solved exactly (to the data's precision) by a QR
factorisation accumulated over chunks of windows (TSQR: memory ``O(chunk × features)``
whatever the number of windows; no normal equations, so no squared condition number).
A :class:`~physres.models.NeuralODE` on a polynomial field is not linear in ``W`` (the step
integrates the field), but the midpoint relation ``(z₁ − z₀)/dt ≈ f((z₀ + z₁)/2)`` (error
O(dt²)) is, and gives a starting point from which Levenberg–Marquardt converges in a few steps.
"""

from __future__ import annotations

import torch


def _poly_block(model):
    from ..models import NeuralODE, PolynomialField, ResNetEmulator

    if isinstance(model, ResNetEmulator):
        block = model.blocks[0]
        linear = (
            isinstance(block, PolynomialField)
            and model.depth == 1
            and model.form == "residual"
            and not model.scale.requires_grad
            and model.drop[0] == 0.0
        )
        return ("resnet", block) if linear else (None, None)
    if isinstance(model, NeuralODE) and isinstance(model.net, PolynomialField):
        return "node", model.net
    return None, None


def linear_kind(model) -> str | None:
    """``"resnet"`` when the one-step loss is linear least squares in the parameters,
    ``"node"`` when a linear midpoint fit gives the starting point, else None."""
    return _poly_block(model)[0]


@torch.no_grad()
def solve(model, chunks) -> dict:
    """Fit the polynomial weights of ``model`` by least squares over one-step pairs.

    ``chunks`` : iterable of ``(x0, x1)``, each (batch, *state_shape), one model step apart, in
    physical units. Returns ``{"kind", "pairs", "features", "rank", "rms_residual"}`` (the
    residual on the last chunk, in normalised units per step).
    """
    kind, block = _poly_block(model)
    if kind is None:
        raise TypeError(f"{type(model).__name__} is not linear in its parameters")
    dtype = block.weight.dtype
    alpha, beta = model.scale.to(dtype) if kind == "resnet" else (None, None)
    r = c = None
    pairs = 0
    for x0, x1 in chunks:
        z0 = model.normalize(x0).to(dtype)
        z1 = model.normalize(x1).to(dtype)
        if kind == "resnet":
            target, at = (z1 - (1 - beta) * z0) / alpha, z0
        else:
            target, at = (z1 - z0) / float(model.dt), (z0 + z1) / 2
        phi = block.features(at)  # (B, F) or (B, n, F)
        phi = phi.reshape(-1, phi.shape[-1])
        target = target.reshape(phi.shape[0], -1)  # (rows, n_out)
        a = phi if r is None else torch.cat([r, phi])
        b = target if c is None else torch.cat([c, target])
        q, r = torch.linalg.qr(a)
        c = q.T @ b
        pairs += x0.shape[0]
        last = (phi, target)
    if r is None:
        raise ValueError("no training pairs to fit")
    sol = torch.linalg.lstsq(r.cpu(), c.cpu(), driver="gelsd")
    w = sol.solution.to(block.weight.device)  # (F, n_out)
    block.weight.copy_(w.T)
    phi, target = last  # the residual on the last chunk, in normalised units per step
    scale = float(alpha) if kind == "resnet" else float(model.dt)
    rms = float((phi @ w - target).pow(2).mean().sqrt()) * scale
    return {
        "kind": kind,
        "pairs": pairs,
        "features": block.n_features,
        "rank": int(sol.rank) if sol.rank is not None else None,
        "rms_residual": rms,
    }

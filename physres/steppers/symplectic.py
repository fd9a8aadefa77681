"""Symplectic steppers for separable Hamiltonian states ``x = (q, p)``."""

from __future__ import annotations

import torch

from .base import Stepper, register
from .explicit import axpy


@register("leapfrog")
class Leapfrog(Stepper):
    """Leapfrog / velocity Verlet (Störmer 1907, Verlet 1967) for ``H(q, p) = T(p) + V(q)``.

    The flattened state is split in halves: positions ``q`` then momenta ``p``, so
    ``(batch, 2)`` for one degree of freedom or ``(batch, 2, n, 3)`` for particles. The field
    must be separable (``dq/dt`` depends on ``p`` only, ``dp/dt`` on ``q`` only); then the
    step is symplectic, time-reversible and second order, and energy errors stay bounded.
    Kick and drift are ``x + h·(f(t, x) ⊙ mask)`` with masks selecting ``p`` or ``q``.
    """

    order = 2
    explicit = True
    general = False

    def _step(self, x, t, dt):
        q_mask, p_mask = self._masks(x)
        x = axpy(x, dt / 2, self.f(t, x) * p_mask)  # kick
        x = axpy(x, dt, self.f(t + dt / 2, x) * q_mask)  # drift
        return axpy(x, dt / 2, self.f(t + dt, x) * p_mask)  # kick

    def _masks(self, x):
        key = (tuple(x.shape[1:]), x.dtype, x.device)
        if getattr(self, "_mask_key", None) != key:
            n = x[0].numel()
            if n % 2:
                raise ValueError(
                    f"leapfrog needs a state that splits into (q, p) halves; "
                    f"got {n} components per sample"
                )
            q = (torch.arange(n, device=x.device) < n // 2).to(x.dtype).reshape(x.shape[1:])
            self._mask_key, self._mask = key, (q, 1 - q)
        return self._mask

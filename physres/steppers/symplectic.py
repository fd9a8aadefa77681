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
    """

    order = 2
    explicit = True
    general = False

    def _step(self, x, t, dt):
        flat = x.reshape(x.shape[0], -1)
        if flat.shape[1] % 2:
            raise ValueError(f"leapfrog needs a state that splits into (q, p) halves; "
                             f"got {flat.shape[1]} components per sample")
        n = flat.shape[1] // 2

        def halves(t, q, p):
            dx = self.f(t, _join(q, p, x.shape)).reshape(x.shape[0], -1)
            return dx[:, :n], dx[:, n:]

        q, p = flat[:, :n], flat[:, n:]
        p = axpy(p, dt / 2, halves(t, q, p)[1])  # kick
        q = axpy(q, dt, halves(t + dt / 2, q, p)[0])  # drift
        p = axpy(p, dt / 2, halves(t + dt, q, p)[1])  # kick
        return _join(q, p, x.shape)


def _join(q, p, shape):
    return torch.cat([q, p], dim=1).reshape(shape)

"""Stability functions measured by running the stepper code itself on ``y' = λ y``."""

from __future__ import annotations

import numpy as np
import torch

from .base import REGISTRY
from .linear import DiagonalOperator


class _TestEquation:
    """The field ``f(t, y) = λ y`` for a batch of λ (one per sample), with its linear form."""

    def __init__(self, lam: torch.Tensor):
        self.lam = lam[:, None]  # (B, 1)
        self.state_shape = (1,)

    def rhs(self, t, y):
        return self.lam * y

    def linear_operator(self, t):
        return DiagonalOperator(self.lam, self.state_shape)


def stability_function(name, z) -> np.ndarray:
    """``R(z)`` of a stepper: one step of size 1 on ``y' = z y`` from ``y = 1``.

    Parameters
    ----------
    name : str or Stepper subclass
        A general-purpose stepper or ``exponential``.
    z : array_like of complex
        Points ``z = λ·dt``; any shape.

    Returns
    -------
    numpy.ndarray of complex128, same shape as ``z``.
    """
    cls = REGISTRY.resolve(name)
    if not cls.general and cls.name != "exponential":
        raise ValueError(
            f"`name`: the stability function of {cls.name!r} is not defined on "
            "y' = λy (it needs a structured field)"
        )
    z = np.asarray(z, dtype=np.complex128)
    lam = torch.from_numpy(z.reshape(-1).copy())
    eq = _TestEquation(lam)
    y0 = torch.ones(lam.shape[0], 1, dtype=torch.complex128)
    with torch.no_grad():
        y1 = cls(eq.rhs)(y0, 0.0, 1.0)
    return y1.reshape(z.shape).numpy()

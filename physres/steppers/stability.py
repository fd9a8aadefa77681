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
        raise ValueError(f"`name`: the stability function of {cls.name!r} is not defined on "
                         "y' = λy (it needs a structured field)")
    z = np.asarray(z, dtype=np.complex128)
    lam = torch.from_numpy(z.reshape(-1).copy())
    eq = _TestEquation(lam)
    y0 = torch.ones(lam.shape[0], 1, dtype=torch.complex128)
    with torch.no_grad():
        y1 = cls(eq.rhs)(y0, 0.0, 1.0)
    return y1.reshape(z.shape).numpy()


def plot_stability_regions(names, path, *, extent=(-5.0, 3.0, -4.0, 4.0), resolution=401):
    """Draw ``|R(z)| ≤ 1`` (measured, :func:`stability_function`) for each stepper in
    ``names`` to a PNG at ``path``; returns the path. Also
    :func:`physres.validation.plot_stability_regions`."""
    from .._output import save_figure, subplots

    fig, ax = subplots(figsize=(6.4, 5.6))
    for i, name in enumerate(names):
        draw_region(ax, name, f"C{i}", REGISTRY.resolve(name).name, extent, resolution,
                    alpha=0.18, lw=1.6)
    region_axes(ax, r"Re($\lambda\,\Delta t$)", r"Im($\lambda\,\Delta t$)",
                r"Stability regions $|R(\lambda\Delta t)| \leq 1$ (shaded), measured")
    ax.legend(loc="upper left", fontsize=9)
    return save_figure(fig, path)


def draw_region(ax, name, color, label, extent, resolution, alpha, lw) -> None:
    """Shade ``|R(z)| ≤ 1`` of stepper ``name`` on the axes ``ax`` over ``extent`` =
    (x0, x1, y0, y1), with ``resolution`` points per side."""
    x0, x1, y0, y1 = extent
    X, Y = np.meshgrid(np.linspace(x0, x1, resolution), np.linspace(y0, y1, resolution))
    R = np.abs(stability_function(name, X + 1j * Y))
    ax.contourf(X, Y, (R <= 1).astype(float), levels=[0.5, 1.5], colors=[color], alpha=alpha)
    ax.contour(X, Y, R, levels=[1.0], colors=[color], linewidths=lw)
    ax.plot([], [], color=color, lw=2, label=label)


def region_axes(ax, xlabel, ylabel, title) -> None:
    """Axes of a stability-region plot: the real and imaginary axes drawn, equal aspect."""
    ax.axhline(0, color="0.6", lw=0.6)
    ax.axvline(0, color="0.6", lw=0.6)
    ax.set_aspect("equal")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)

"""Invariant-preserving steps: any learned step projected onto its known linear invariants.

For invariants ``C x`` (``C`` of shape ``(k, N)``, full row rank; Robertson's total mass is
``C = [[1, 1, 1]]``) the projected step is the closest point, in the normalised metric
``‖Δx/σ‖``, to the inner model's output ``x̃`` on the affine set ``C x = C x_n``::

    x_{n+1} = x̃ + W Cᵀ (C W Cᵀ)⁻¹ C (x_n − x̃),    W = diag(σ²)

so ``C x_{n+1} = C x_n`` to round-off at every step, whatever the inner model has learned, and
the correction is shared among the components in proportion to their scale (a component of
size 1e-5 is not moved by an error of the size-1 ones). The projection is linear in ``x̃`` and
differentiable (training sees it). Orthogonal projection onto invariant manifolds:
Hairer, Lubich & Wanner (2006), §IV.4.
"""

from __future__ import annotations

import math

import torch

from .base import REGISTRY, LearnedStepper, register


@register("projected")
class ProjectedEmulator(LearnedStepper):
    """A learned stepper whose every step keeps the linear invariants ``C x`` exactly.

    Parameters
    ----------
    state_shape : tuple of int
    invariants : list of ``N`` numbers (one invariant) or ``k`` such lists, ``N`` the number of
        state components (flattened); rows must be linearly independent
    model : str or LearnedStepper, the inner model (a registered name, built with
        ``state_shape``, ``dt`` and ``model_options``; or an instance of the same state shape)
    model_options : dict, keyword arguments of the inner model when ``model`` is a name
    complex_state : bool, must be False (accepted for a uniform model interface)
    dt : float, the training step

    The normalisation set on this model (:meth:`set_normalization`) is passed to the inner one.
    """

    def __init__(
        self,
        state_shape,
        *,
        invariants,
        model="resnet",
        model_options: dict | None = None,
        complex_state: bool = False,
        dt: float | None = None,
    ):
        if complex_state:
            raise ValueError("`complex_state` must be False: the linear invariants here are real")
        super().__init__(state_shape, dt=dt)
        size = math.prod(self.state_shape)
        try:
            c = torch.as_tensor(invariants, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(
                f"`invariants` must be a list of {size} numbers or a list of such "
                f"lists, got {invariants!r}"
            ) from None
        c = c.reshape(1, -1) if c.dim() == 1 else c
        if c.dim() != 2 or c.shape[1] != size or c.shape[0] == 0:
            raise ValueError(
                f"`invariants` must have shape ({size},) or (k, {size}) for state "
                f"shape {self.state_shape}, got {tuple(c.shape)}"
            )
        if not bool(torch.isfinite(c).all()):
            raise ValueError("`invariants` contains non-finite values")
        if int(torch.linalg.matrix_rank(c)) < c.shape[0]:
            raise ValueError(
                f"`invariants` rows must be linearly independent (rank "
                f"{int(torch.linalg.matrix_rank(c))} < {c.shape[0]} rows)"
            )
        self.register_buffer("invariant_matrix", c, persistent=False)
        if isinstance(model, LearnedStepper):
            if model_options:
                raise ValueError("`model_options` applies only when `model` is a name")
            if tuple(model.state_shape) != self.state_shape:
                raise ValueError(
                    f"`model` has state_shape {tuple(model.state_shape)}, this "
                    f"model has {self.state_shape}"
                )
            inner = model
        else:
            cls = REGISTRY.resolve(model)
            if not issubclass(cls, LearnedStepper):
                raise TypeError(f"`model` must name a learned stepper, got {model!r}")
            inner = cls(state_shape=self.state_shape, dt=dt, **(model_options or {}))
        if inner.complex_state:
            raise ValueError("`model` steps complex states; linear invariants here are real")
        self.model = inner
        self.counts = inner.counts  # one set of counters: the inner model's evaluations
        self.fixed_dt = inner.fixed_dt
        self.explicit = inner.explicit

    def set_normalization(self, mean, std) -> None:
        super().set_normalization(mean, std)
        self.model.set_normalization(mean, std)

    def project(self, x_prev: torch.Tensor, x_new: torch.Tensor) -> torch.Tensor:
        """``x_new`` moved (in the normalised metric) onto ``C x = C x_prev``; shapes
        ``(batch, *state_shape)``."""
        batch = x_new.shape[0]
        c = self.invariant_matrix.to(x_new)  # (k, N)
        _, std = self._stats(x_new)
        wc = c * std.reshape(1, -1) ** 2  # (k, N): (W Cᵀ)ᵀ
        gram = wc @ c.T  # (k, k)
        r = (x_prev - x_new).reshape(batch, -1) @ c.T  # (B, k)
        lam = torch.linalg.solve(gram, r.T).T  # (B, k)
        return x_new + (lam @ wc).reshape(x_new.shape)

    def _step(self, x, t, dt):
        return self.project(x, self.model.step(x, t, dt))

    def _functional_step(self, x, t, dt):
        return self.project(x, self.model._functional_step(x, t, dt))

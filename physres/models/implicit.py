"""Implicit ResNet: ``x_{n+1} = x_n + dt·f_θ(x_{n+1})``, a learned backward-Euler step.

The forward pass solves the stage equation by batched Newton
(:func:`physres.steppers.newton.solve_stage`); gradients come from implicit differentiation at
the solution, ``dz/dθ = −(I − dt·∂f/∂z)⁻¹ ∂G/∂θ`` (as in deep equilibrium models, Bai et al.,
2019), so the Newton iterations are never backpropagated through. Being L-stable for a
dissipative learned field, it steps stiff dynamics at dt far beyond an explicit emulator's limit.
"""

from __future__ import annotations

import torch

from ..steppers.newton import NewtonOptions, solve_stage
from .base import LearnedStepper, real_dtype_arg, register
from .fields import build_net


@register("implicit")
class ImplicitResNet(LearnedStepper):
    """Learned field advanced by backward Euler, root-solved in the forward pass.

    Parameters
    ----------
    state_shape, complex_state, net, width, layers, activation, net_options : as
        :class:`~physres.models.NeuralODE`
    tol : float, optional, Newton tolerance (default 1e-12 in float64, 1e-5 in float32)
    max_iter : int, Newton iterations before :class:`~physres.errors.ConvergenceError`
    krylov_above : int, state size above which Newton–Krylov replaces dense Jacobians
    dt : float, optional, the training step (any dt may be used afterwards)
    dtype : the parameters' dtype; the stage equation is solved in it

    Attributes
    ----------
    stats : dict with ``steps``, ``nfev`` (field evaluations), ``njev`` (Jacobians, one per
        Newton iteration plus one per differentiated step); :meth:`solver_stats` adds averages.
    """

    explicit = False
    has_field = True
    vmappable = False  # its Newton solve syncs with the host: torch.func.vmap cannot trace it

    def __init__(
        self,
        state_shape,
        *,
        complex_state: bool = False,
        net="mlp",
        width: int = 64,
        layers: int = 2,
        activation: str = "tanh",
        net_options: dict | None = None,
        tol: float | None = None,
        max_iter: int = 30,
        krylov_above: int = 128,
        dt: float | None = None,
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__(state_shape, complex_state=complex_state, dt=dt)
        options = dict(width=width, layers=layers, activation=activation, **(net_options or {}))
        self.net = build_net(
            net, self.state_shape, self.complex_state, real_dtype_arg(dtype), **options
        )
        self.newton = NewtonOptions(tol=tol, max_iter=max_iter, krylov_above=krylov_above)
        self.steps = 0

    def _field(self, t, z):
        return self.net(t, z)

    def _stage_field(self, t, z):  # the owner (self) carries the parameters, for autograd
        return self.net(t, z)

    def _step(self, x, t, dt):
        z = self.to_net(self.normalize(x))
        z1 = solve_stage(
            self._stage_field,
            t + dt,
            float(dt),
            z,
            options=self.newton,
            method="implicit ResNet",
            counts=self.counts,
        )
        self.steps += 1
        return self.denormalize(z1.to(x.dtype))

    @property
    def stats(self) -> dict:
        return {"steps": self.steps, "nfev": self.nfev, "njev": self.njev}

    def solver_stats(self) -> dict:
        """Counters and per-step averages since construction (or :meth:`reset_stats`)."""
        s = self.stats
        n = max(s["steps"], 1)
        return {**s, "nfev_per_step": s["nfev"] / n, "njev_per_step": s["njev"] / n}

    def reset_stats(self) -> None:
        self.nfev = self.njev = self.steps = 0

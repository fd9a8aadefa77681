"""Hybrid "solver in the loop" stepper: a coarse known-physics step plus a learned correction.

``x_{n+1} = Φ_coarse(x_n; dt) + σ·c·g_θ((x_n − μ)/σ)``, where ``Φ_coarse`` is any physres stepper
on a :class:`~physres.systems.System`'s ``rhs`` taken at a large ``dt`` (Um et al., 2020,
"Solver-in-the-loop"). The network learns only the coarse step's error, so a cheap large-dt
integrator can match a fine reference. The correction starts near zero (the model starts as the
coarse stepper).
"""

from __future__ import annotations

import torch

from .. import _checks
from .. import steppers as _steppers
from .. import systems as _systems
from .base import LearnedStepper, real_dtype_arg, register
from .fields import build_net


@register("hybrid")
class HybridStepper(LearnedStepper):
    """Coarse physics step plus a learned correction, trained at a fixed ``dt``.

    Parameters
    ----------
    state_shape : tuple of int (must match the system's)
    system : str or System, the known physics (by registered name or instance)
    system_params : dict, parameters when ``system`` is a name
    coarse : str, a registered physres stepper (``"rk4"``, ``"euler"``, ``"leapfrog"``, ...)
    coarse_substeps : int, coarse steps per ``dt``
    complex_state, net, width, layers, activation, net_options : the correction network
    correction_scale : float, ``c`` above
    dt : float, the training step (the model steps only at this dt)
    dtype : the correction network's dtype
    """

    fixed_dt = True

    def __init__(
        self,
        state_shape,
        *,
        system,
        system_params: dict | None = None,
        coarse: str = "rk4",
        coarse_substeps: int = 1,
        complex_state: bool = False,
        net="mlp",
        width: int = 64,
        layers: int = 2,
        activation: str = "tanh",
        net_options: dict | None = None,
        correction_scale: float = 1.0,
        dt: float | None = None,
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__(state_shape, complex_state=complex_state, dt=dt)
        if isinstance(system, _systems.System):
            if system_params:
                raise ValueError("`system_params` applies only when `system` is a name")
            self.system = system
        else:
            self.system = _systems.get(system, **(system_params or {}))
        if tuple(self.system.state_shape) != self.state_shape:
            raise ValueError(
                f"`state_shape` {self.state_shape} does not match the system's "
                f"{tuple(self.system.state_shape)}"
            )
        self.coarse = _steppers.get(coarse, self.system.rhs)
        self.explicit = self.coarse.explicit
        self.coarse_substeps = _checks.positive_int("coarse_substeps", coarse_substeps)
        self.correction_scale = float(correction_scale)
        options = dict(width=width, layers=layers, activation=activation, **(net_options or {}))
        self.net = build_net(
            net, self.state_shape, self.complex_state, real_dtype_arg(dtype), **options
        )

    def _step(self, x, t, dt):
        h = float(dt) / self.coarse_substeps
        xc = x
        for i in range(self.coarse_substeps):
            xc = self.coarse.step(xc, t + i * h, h)
        self.nfev += 1
        g = self.net(t, self.to_net(self.normalize(x))).to(x.dtype)
        _, std = self._stats(x)
        return xc + self.correction_scale * std * g

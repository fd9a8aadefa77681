"""Neural ODE (Chen et al., 2018): a learned field ``f_θ`` integrated by torchdiffeq.

One step solves ``dz/dt = f_θ(t, z)`` from ``t`` to ``t + dt`` in normalised coordinates
``z = (x − μ)/σ``; the physical field is ``σ·f_θ(t, (x − μ)/σ)`` (:meth:`rhs`). The state is
integrated in its own dtype; only the field is evaluated in the network's dtype.

Method names mean what they mean everywhere in physres: ``"rk4"`` is the classical Runge–Kutta
method (physres's ``rk4`` stepper), ``"rk38"`` Kutta's 3/8 rule (torchdiffeq's fixed-grid
``"rk4"``). The fixed-grid ``euler``, ``midpoint``, ``rk4`` and ``rk38`` are stepped here
(physres's tableaus; the 3/8 rule in torchdiffeq's operation order), every other method by
torchdiffeq. Model files written before ``"rk38"`` existed stored the 3/8 rule as ``"rk4"``;
they load as ``"rk38"`` (:meth:`NeuralODE.upgrade_config`), with a warning saying so.
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import nn

from .. import _checks
from .. import steppers as _steppers
from .base import LearnedStepper, real_dtype_arg, register
from .fields import build_net

# physres name -> torchdiffeq name, where the two differ ("rk4" has no torchdiffeq name)
_TORCHDIFFEQ_NAMES = {"rk38": "rk4"}
_FIXED_GRID = ("euler", "midpoint", "rk4", "rk38", "explicit_adams", "implicit_adams", "heun3")


@register("node")
class NeuralODE(LearnedStepper):
    """Learned field integrated with ``torchdiffeq.odeint`` (or ``odeint_adjoint``).

    Parameters
    ----------
    state_shape : tuple of int
    complex_state : bool
    net : str or LearnedField, the field network (``"mlp"``, ``"conv1d"``, ...)
    width, layers, activation, net_options : the field network's settings
    method : ``"rk4"`` (classical RK4, fixed grid), ``"rk38"`` (3/8 rule, fixed grid),
        ``"euler"``, ``"midpoint"``, or any other torchdiffeq method, e.g. ``"dopri5"``
        (adaptive). With ``adjoint=True`` the method must be torchdiffeq's (not ``"rk4"``).
    rtol, atol : tolerances of adaptive methods
    step_size : float, optional; internal step of fixed-grid methods (default: one step of dt)
    adjoint : bool, gradients by the adjoint method (memory O(1) in the number of steps)
    dt : float, optional, the training step (any dt may be used afterwards)
    dtype : the parameters' dtype
    """

    has_field = True
    config_version = 2  # 2: "rk4" is classical RK4; in version 1 files it meant the 3/8 rule

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
        method: str = "dopri5",
        rtol: float = 1e-6,
        atol: float = 1e-8,
        step_size: float | None = None,
        adjoint: bool = False,
        dt: float | None = None,
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__(state_shape, complex_state=complex_state, dt=dt)
        from torchdiffeq._impl.odeint import SOLVERS

        valid = sorted({*_STAGES, *(m for m in SOLVERS if m not in _TORCHDIFFEQ_NAMES.values())})
        if method not in valid:
            raise ValueError(
                f"`method` must be one of {', '.join(valid)} (rk4: classical "
                f"Runge–Kutta; rk38: the 3/8 rule), got {method!r}"
            )
        if adjoint and method == "rk4":
            raise ValueError(
                "`adjoint=True` integrates with torchdiffeq, which has no classical "
                "fixed-grid RK4; use method='rk38' (the 3/8 rule, also order 4), "
                "an adaptive method such as 'dopri5', or adjoint=False"
            )
        self.method = method
        self.rtol = _checks.positive("rtol", rtol)
        self.atol = _checks.positive("atol", atol)
        self.step_size = None if step_size is None else _checks.positive("step_size", step_size)
        if self.step_size is not None and method not in _FIXED_GRID:
            raise ValueError(
                f"`step_size` applies to fixed-grid methods ({', '.join(_FIXED_GRID)})"
                f", not {method!r}"
            )
        self.adjoint = bool(adjoint)
        options = dict(width=width, layers=layers, activation=activation, **(net_options or {}))
        self.net = build_net(
            net, self.state_shape, self.complex_state, real_dtype_arg(dtype), **options
        )
        self._func = _CountingField(self)
        if method in _STAGES and method != "rk38":  # physres's tableau (not a submodule)
            self.__dict__["_tableau_step"] = _steppers.get(method, self._func)

    def _field(self, t, z):
        return self.net(t, z)

    @classmethod
    def upgrade_config(cls, config: dict, version: int) -> dict:
        """Version 1 files (before ``"rk38"``) stored torchdiffeq's 3/8 rule as ``"rk4"``."""
        if version < 2 and config.get("method") == "rk4":
            warnings.warn(
                "this model file predates method 'rk38': its method 'rk4' was "
                "torchdiffeq's 3/8 rule and is loaded as 'rk38' (in physres 'rk4' is "
                "classical RK4); save it again to record the new name",
                UserWarning,
                stacklevel=4,
            )
            config = {**config, "method": "rk38"}
        return config

    def _step(self, x, t, dt):
        if self.method in _STAGES and not self.adjoint:
            return self._functional_step(x, t, dt)
        import torchdiffeq

        z = self.normalize(x)
        real = torch.view_as_real(z) if z.is_complex() else z  # torchdiffeq on real tensors
        tt = torch.tensor([float(t), float(t) + float(dt)], dtype=real.dtype, device=real.device)
        kwargs = dict(
            rtol=self.rtol, atol=self.atol, method=_TORCHDIFFEQ_NAMES.get(self.method, self.method)
        )
        if self.step_size is not None:
            kwargs["options"] = {"step_size": self.step_size}
        if self.adjoint:
            # adjoint_params: the field's parameters (the buffers are constants)
            out = torchdiffeq.odeint_adjoint(
                self._func, real, tt, adjoint_params=tuple(self.net.parameters()), **kwargs
            )[-1]
        else:
            out = torchdiffeq.odeint(self._func, real, tt, **kwargs)[-1]
        z1 = torch.view_as_complex(out.contiguous()) if z.is_complex() else out
        return self.denormalize(z1)

    def _functional_step(self, x, t, dt):
        """:meth:`_step` in out-of-place operations (``torch.func.vmap`` batches per-sample
        Jacobians through it). The fixed-grid methods step on torchdiffeq's time grid (steps of
        ``step_size``, the last one cut at ``t + dt``): ``euler``, ``midpoint`` and ``rk4`` by
        physres's tableau steppers, ``rk38`` stage by stage as torchdiffeq does it; the
        adjoint and other methods go through torchdiffeq."""
        if self.method not in _STAGES:
            return self._step(x, t, dt)
        z = self.normalize(x)
        y = torch.view_as_real(z) if z.is_complex() else z
        t0, t1 = float(t), float(t) + float(dt)
        h = float(dt) if self.step_size is None else self.step_size
        grid = [t0 + i * h for i in range(max(2, math.ceil((t1 - t0) / h + 1)))]
        grid[-1] = t1
        tableau = self.__dict__.get("_tableau_step")
        for a, b in zip(grid[:-1], grid[1:], strict=True):
            if tableau is not None:
                y = tableau.step(y, a, b - a)
            else:
                y = y + _rk38(self._func, a, b - a, y)
        z1 = torch.view_as_complex(y.contiguous()) if z.is_complex() else y
        return self.denormalize(z1)


# Written out in torchdiffeq's own operation order (not via physres.steppers.tableau), so the
# "rk38" step matches torchdiffeq's "rk4" to the last bit or two; a generic tableau loop rounds
# differently.
def _rk38(f, t, h, y):  # Kutta's 3/8 rule: torchdiffeq's fixed-grid "rk4"
    k1 = f(t, y)
    k2 = f(t + h / 3, y + h * k1 / 3)
    k3 = f(t + 2 * h / 3, y + h * (k2 - k1 / 3))
    k4 = f(t + h, y + h * (k1 - k2 + k3))
    return (k1 + 3 * (k2 + k3) + k4) * h * 0.125


_STAGES = ("euler", "midpoint", "rk4", "rk38")  # the fixed-grid methods stepped here


class _CountingField(nn.Module):
    """``f_θ`` on the (real view of the) normalised state, in the state's dtype, counted."""

    def __init__(self, model: NeuralODE):
        super().__init__()
        self.__dict__["model"] = model  # not a submodule: avoids a reference cycle of modules

    def forward(self, t, real):
        model = self.model
        model.nfev += 1
        z = torch.view_as_complex(real) if model.complex_state else real
        out = model.net(t, model.to_net(z)).to(z.dtype)
        return torch.view_as_real(out) if model.complex_state else out

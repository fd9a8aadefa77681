"""Bases of the learned integrators: a registry, learned fields and learned steppers.

Every learned model is a :class:`~physres.steppers.Stepper`, so it runs wherever a known-physics
stepper runs (``model(x, t, dt)``, :func:`physres.rollout`, :func:`physres.integrate`). Models hold
their normalisation (``norm_mean``, ``norm_std`` buffers) and step in physical units.

Artifacts (:func:`physres.save` / :func:`physres.load`) rebuild a model from its registered name
and the keyword arguments it was built with, which the base class records automatically.
"""

from __future__ import annotations

import functools
import inspect
import math
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from .. import _checks
from .._registry import Registry
from ..steppers.base import Stepper


class Configurable(nn.Module):
    """A module rebuilt from ``cls(**config)``: the keyword arguments of its constructor.

    The arguments of the outermost ``__init__`` call are recorded in ``self.config`` (a dict).
    They must be JSON values, torch dtypes, :class:`~physres.systems.System` instances or other
    ``Configurable`` modules, so that :func:`physres.save` can store them without pickling.
    """

    name: ClassVar[str] = ""
    config: dict
    # model files record it; raise it when an argument changes meaning, and map older
    # configs in upgrade_config
    config_version: ClassVar[int] = 1

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__:
            cls.__init__ = _recording(cls.__init__)

    @classmethod
    def upgrade_config(cls, config: dict, version: int) -> dict:
        """Constructor arguments read from a file written at ``config_version`` ``version``,
        translated to this version's meaning (the default: unchanged)."""
        return config


def _recording(init):
    signature = inspect.signature(init)
    if any(p.kind is p.VAR_POSITIONAL for p in signature.parameters.values()):
        raise TypeError(f"{init.__qualname__} must not take *args (its arguments are stored)")

    @functools.wraps(init)
    def wrapped(self, *args, **kwargs):
        outer = "_config_pending" not in self.__dict__ and "config" not in self.__dict__
        if outer:
            bound = signature.bind(self, *args, **kwargs)
            bound.apply_defaults()
            config = {}
            for key, value in list(bound.arguments.items())[1:]:
                if signature.parameters[key].kind is inspect.Parameter.VAR_KEYWORD:
                    config.update(value)
                else:
                    config[key] = value
            self.__dict__["_config_pending"] = config
        try:
            init(self, *args, **kwargs)
        finally:
            if outer:
                self.__dict__["config"] = self.__dict__.pop("_config_pending")

    return wrapped


REGISTRY: Registry[type[Configurable]] = Registry("model", Configurable)
register = REGISTRY.register


def get(name, **kwargs) -> Configurable:
    """Build a registered model or field: ``get("resnet", state_shape=(2,), width=64)``."""
    return REGISTRY.resolve(name)(**kwargs)


def names(kind: type | None = None) -> list[str]:
    """Registered names; ``kind=LearnedStepper`` (or ``LearnedField``) keeps that family."""
    if kind is None:
        return REGISTRY.names()
    return REGISTRY.names(lambda c: issubclass(c, kind))


def state_shape_arg(state_shape) -> tuple[int, ...]:
    """Check a ``state_shape`` argument: a non-empty tuple of positive ints."""
    if isinstance(state_shape, int):
        state_shape = (state_shape,)
    try:
        shape = tuple(state_shape)
    except TypeError:
        raise TypeError(f"`state_shape` must be a tuple of ints, got {state_shape!r}") from None
    if not shape or not all(
        isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape
    ):
        raise ValueError(
            f"`state_shape` must be a non-empty tuple of positive ints, got {state_shape!r}"
        )
    return shape


def real_dtype_arg(dtype) -> torch.dtype:
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"`dtype` must be torch.float32 or torch.float64, got {dtype!r}")
    return dtype


class LearnedField(Configurable):
    """A network ``f_θ(t, z)`` on normalised states: same shape in, same shape out.

    Subclass contract:

    1. ``__init__(state_shape, *, complex_state=False, ..., dtype=torch.float32)`` with keyword
       arguments only of the kinds :class:`Configurable` accepts; call ``super().__init__()``.
    2. Implement ``forward(t, z)``: ``z`` of shape ``(batch, *state_shape)``, real, or complex
       when ``complex_state``; return a tensor of the same shape and dtype.
    3. Register the class with ``@physres.models.register("name")`` so artifacts can rebuild it.
    """

    state_shape: tuple[int, ...]
    complex_state: bool


class LearnedStepper(Configurable, Stepper):
    """Base of every learned time-stepper: ``x_{n+1} = model(x_n, t, dt)`` in physical units.

    Subclass contract:

    1. ``__init__`` takes keyword arguments only (see :class:`Configurable`) and calls
       ``super().__init__(state_shape, complex_state=..., dt=...)`` first.
    2. Implement ``_step(x, t, dt)`` in physical units, using ``normalize`` / ``denormalize``
       (and ``to_net`` / ``from_net`` to cast between the state's and the network's dtype).
       Return the same shape and dtype as ``x``.
    3. Models with a learned vector field set ``has_field = True`` and implement
       ``_field(t, z)`` (normalised units, network dtype); the base then provides ``rhs(t, x)``
       in physical units, ``numpy_rhs`` for scipy and ``vector_field()`` for torchdiffeq.
    4. Register the class with ``@physres.models.register("name")``.

    Parameters
    ----------
    state_shape : tuple of int
    complex_state : bool
        Complex states (wavefunctions) are fed to networks as (Re, Im) channels.
    dt : float, optional
        The step the model was trained for. Residual maps ``x + g(x)`` only step at this ``dt``.
    """

    order = 0  # a learned map has no formal order of accuracy
    explicit = True
    general = False  # not built from an arbitrary field f(t, x)
    has_field: ClassVar[bool] = False
    fixed_dt: ClassVar[bool] = False  # True for maps that only step at the trained dt
    vmappable: ClassVar[bool] = True  # False when a step cannot run under torch.func.vmap

    def __init__(self, state_shape, *, complex_state: bool = False, dt: float | None = None):
        shape = state_shape_arg(state_shape)
        Stepper.__init__(self, None, state_shape=shape)
        self.complex_state = bool(complex_state)
        self.dt = None if dt is None else _checks.positive("dt", dt)
        self.register_buffer("norm_mean", torch.zeros(shape, dtype=torch.float64))
        self.register_buffer("norm_std", torch.ones(shape, dtype=torch.float64))

    # --- normalisation ----------------------------------------------------------------------
    def set_normalization(self, mean, std) -> None:
        """Set the per-component mean and std (real, shape ``state_shape``) used inside."""
        mean = torch.as_tensor(mean, dtype=torch.float64)
        std = torch.as_tensor(std, dtype=torch.float64)
        for label, value in (("mean", mean), ("std", std)):
            if tuple(value.shape) != self.state_shape:
                raise ValueError(
                    f"normalisation `{label}` must have shape {self.state_shape}, "
                    f"got {tuple(value.shape)}"
                )
            if not bool(torch.isfinite(value).all()):
                raise ValueError(f"normalisation `{label}` contains non-finite values")
        if not bool((std > 0).all()):
            raise ValueError("normalisation `std` must be > 0 everywhere")
        self.norm_mean.copy_(mean.to(self.norm_mean))
        self.norm_std.copy_(std.to(self.norm_std))

    @property
    def normalization(self) -> dict[str, torch.Tensor]:
        return {"mean": self.norm_mean.clone(), "std": self.norm_std.clone()}

    def _stats(self, x):
        real = x.real.dtype if x.is_complex() else x.dtype
        return self.norm_mean.to(real), self.norm_std.to(real)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """``(x - mean) / std`` in the dtype of ``x``."""
        mean, std = self._stats(x)
        return (x - mean) / std

    def denormalize(self, z: torch.Tensor) -> torch.Tensor:
        mean, std = self._stats(z)
        return z * std + mean

    @property
    def net_dtype(self) -> torch.dtype:
        """Real dtype of the parameters (float32 or float64)."""
        for p in self.parameters():
            return p.dtype
        return torch.float64

    def to_net(self, z: torch.Tensor) -> torch.Tensor:
        """Cast a (normalised) state to the network's dtype (complex if the state is)."""
        dtype = self.net_dtype
        if z.is_complex():
            dtype = torch.complex64 if dtype == torch.float32 else torch.complex128
        return z.to(dtype)

    def check_step_size(self, dt) -> None:
        """Residual maps were trained at one ``dt``; refuse any other."""
        if self.fixed_dt and self.dt is not None:
            dt = float(dt)
            if not math.isclose(dt, self.dt, rel_tol=1e-9, abs_tol=0.0):
                raise ValueError(
                    f"`dt` = {dt:g} differs from the step {self.dt:g} this {type(self).__name__} "
                    f"was trained for; a learned residual map steps only at its training dt "
                    f"(use a field model such as NeuralODE to change dt)"
                )

    def check_call(self, x, dt) -> None:
        super().check_call(x, dt)
        if x.is_complex() != self.complex_state:
            kind = "complex" if self.complex_state else "real"
            raise TypeError(f"`x` must be a {kind} tensor for this model, got dtype {x.dtype}")
        self.check_step_size(dt)

    def _functional_step(self, x, t, dt):
        """:meth:`_step` in out-of-place operations only, for ``torch.func`` transforms
        (per-sample Jacobians by ``vmap``); the default is ``_step`` itself."""
        return self._step(x, t, dt)

    # --- the learned vector field, in physical units -----------------------------------------
    def _field(self, t, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def rhs(self, t, x: torch.Tensor) -> torch.Tensor:
        """The learned ``dx/dt`` in physical units, batched: x (batch, *state_shape).

        Usable as ``func`` for ``torchdiffeq.odeint(model.rhs, x0, t)``.
        """
        if not self.has_field:
            raise TypeError(
                f"{type(self).__name__} learns a step map, not a vector field; "
                "`rhs` exists for models with a learned field (node, implicit, "
                "resnet with form='euler')"
            )
        z = self.to_net(self.normalize(x))
        self.nfev += 1
        _, std = self._stats(x)
        return self._field(t, z).to(x.dtype) * std

    def numpy_rhs(self, t: float, y: np.ndarray) -> np.ndarray:
        """The learned field for scipy ``solve_ivp(model.numpy_rhs, ...)``.

        ``y`` flat of shape ``(n,)``, or ``(n, k)`` when scipy calls it vectorised.
        """
        y = np.asarray(y)
        vectorised = y.ndim == 2
        batch = y.T if vectorised else y[None]
        x = torch.from_numpy(np.ascontiguousarray(batch)).reshape(-1, *self.state_shape)
        with torch.no_grad():
            out = self.rhs(float(t), x).reshape(x.shape[0], -1).cpu().numpy()
        return out.T if vectorised else out[0]

    def vector_field(self) -> nn.Module:
        """The learned field as a module ``f(t, x)`` (for ``torchdiffeq.odeint_adjoint``)."""
        return _PhysicalField(self)


class _PhysicalField(nn.Module):
    def __init__(self, model: LearnedStepper):
        super().__init__()
        self.model = model

    def forward(self, t, x):
        return self.model.rhs(t, x)

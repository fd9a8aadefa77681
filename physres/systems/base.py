"""The `System` base class: known physics as a batched torch vector field."""

from __future__ import annotations

import abc
import json
from typing import ClassVar

import numpy as np
import torch

from .._registry import Registry


class System(abc.ABC):
    """Known physics ``dx/dt = rhs(t, x)`` with its metadata.

    Subclass contract:

    1. Class attributes: ``dtype`` (default ``torch.float64``); defaults for reference data:
       ``t_end``, ``dt_save``, ``reference_method``, ``reference_rtol``, ``reference_atol``.
    2. ``__init__(**params)``: validate every parameter (``ValueError`` naming it), then call
       ``super().__init__(**params)`` with JSON-serialisable values; they become ``self.params``.
    3. ``state_shape``: a tuple, e.g. ``(3,)``, ``(n_grid,)``, ``(n_beads, 3)``.
    4. ``rhs(t, x)``: batched torch, ``x`` of shape ``(batch, *state_shape)``; ``t`` a float or
       0-d tensor.
    5. ``sample_initial(n, seed=0)``: ``(n, *state_shape)``, documented distribution.
    6. Optional structure: ``invariants(x)`` (dict name → ``(batch,)``), ``jacobian(t, x)``
       (``(batch, n, n)`` on flattened real states), ``linear_operator(t)``
       (a :class:`~physres.steppers.LinearOperator` when the field is linear).
    7. Optional ``linear_invariants``: rows ``c`` (each of ``n_state`` numbers, flattened state)
       with ``c · x`` exactly conserved by the field, e.g. Robertson's mass ``((1, 1, 1),)``;
       learned models may keep them exactly (:class:`~physres.models.ProjectedEmulator`).
    """

    name: ClassVar[str] = ""
    dtype: ClassVar[torch.dtype] = torch.float64
    state_shape: tuple[int, ...]
    t_end: ClassVar[float] = 10.0
    dt_save: ClassVar[float] = 0.1
    reference_method: ClassVar[str] = "DOP853"
    reference_rtol: ClassVar[float] = 1e-10
    reference_atol: ClassVar[float] = 1e-12
    jacobian = None  # subclasses with an analytic Jacobian define jacobian(t, x)
    linear_invariants: ClassVar[tuple[tuple[float, ...], ...] | None] = None

    def __init__(self, **params):
        self.params = params
        json.dumps(params)  # parameters must be storable as HDF5 attributes (JSON)

    @abc.abstractmethod
    def rhs(self, t, x: torch.Tensor) -> torch.Tensor:
        """``dx/dt``, same shape as ``x`` (batch, *state_shape)."""

    @abc.abstractmethod
    def sample_initial(self, n: int, seed: int = 0) -> torch.Tensor:
        """``n`` initial states, shape (n, *state_shape)."""

    def invariants(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Conserved quantities (or monitored ones), each of shape (batch,)."""
        return {}

    def linear_operator(self, t):
        """The operator ``A(t)`` when ``rhs(t, x) = A(t) x``; ``None`` for nonlinear systems."""
        return None

    # --- numpy adapters for scipy (one trajectory, flat state) -------------------------------
    def numpy_rhs(self, t: float, y: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(y)).reshape(1, *self.state_shape)
        with torch.no_grad():
            return self.rhs(t, x.to(self.dtype)).reshape(-1).numpy()

    def numpy_rhs_batch(self, t: float, y: np.ndarray) -> np.ndarray:
        """``rhs`` on a batch of numpy states (batch, *state_shape), same shape back (the field
        of a stacked reference solve, ``physres.reference.solve(..., stack=True)``)."""
        with torch.no_grad():
            return self.rhs(t, torch.from_numpy(np.ascontiguousarray(y)).to(self.dtype)).numpy()

    def numpy_jacobian(self, t: float, y: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(y)).reshape(1, *self.state_shape)
        with torch.no_grad():
            return self.jacobian(t, x.to(self.dtype))[0].numpy()

    @property
    def n_state(self) -> int:
        return int(np.prod(self.state_shape))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{type(self).__name__}({args})"


REGISTRY: Registry[type[System]] = Registry("system", System)
register = REGISTRY.register


def get(name, **params) -> System:
    """Build a system by registered name (or class): ``get("lorenz63", rho=28.0)``."""
    cls = REGISTRY.resolve(name)
    accepted = _parameters(cls)
    unknown = sorted(set(params) - set(accepted)) if accepted is not None else []
    if unknown:
        raise TypeError(
            f"unknown parameter(s) {', '.join(f'`{u}`' for u in unknown)} for "
            f"system {cls.name!r}; accepted: {', '.join(accepted) or '(none)'}"
        )
    return cls(**params)


def _parameters(cls) -> list[str] | None:
    """Keyword parameters of ``cls.__init__`` (None when it takes ``**kwargs``)."""
    import inspect

    sig = inspect.signature(cls.__init__)
    if any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        return None
    return [
        n
        for n, p in sig.parameters.items()
        if n != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]


def names() -> list[str]:
    """Registered system names."""
    return REGISTRY.names()

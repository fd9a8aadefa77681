"""The `Stepper` base class: one residual time-step ``x_{n+1} = x_n + increment``."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from .. import _checks
from .._registry import Registry

EXACT_ORDER = 64  # the `order` of steppers with no truncation error (exact for their fields)


def field_owner(field):
    """The object carrying a field's structure: ``system`` for ``system.rhs``, else the field."""
    return getattr(field, "__self__", field)


class Stepper(nn.Module):
    """Base class of every time-stepper, known physics or learned.

    A stepper maps ``(x, t, dt)`` to ``x_{n+1}``. Calling it, ``stepper(x, t, dt)``, checks the
    input and steps; :meth:`step` is the same step without the checks, for inner loops that
    validated once with :meth:`check_call` (:func:`physres.rollout`, :func:`physres.integrate`,
    training losses, composite steppers). Code outside the class calls ``step`` or the stepper,
    never ``_step``: ``_step`` is the hook a subclass implements.

    Subclass contract:

    1. Set the class attributes ``order`` (int, the global order of accuracy) and ``explicit``
       (bool). ``general`` (default True) says whether any field ``f(t, x)`` works; steppers that
       need structure (a separable Hamiltonian, a linear or split operator) set it to False.
    2. Implement ``_step(x, t, dt)``: ``x`` of shape ``(batch, *state_shape)``, ``t`` and ``dt``
       floats or 0-d tensors; return the next state, same shape and dtype. Evaluate the field
       through ``self.f(t, x)`` so evaluations are counted.
    3. Do not override ``forward`` or ``step``. ``check_call`` may be extended with checks of
       the subclass's own (calling ``super().check_call(x, dt)`` first).
    4. Optional, for error control: a stepper with an embedded error estimate sets
       ``error_order`` (int, order of its embedded lower-order solution) and implements
       ``_step_with_error(x, t, dt) -> (x_next, err)``, ``err`` the local error estimate with
       the shape of ``x``. :func:`physres.integrate` then uses it instead of step doubling.
    5. Optional, per-sample steps: ``per_sample = True`` declares that ``_step`` (and
       ``_step_with_error``) accept ``t`` and ``dt`` as float64 tensors of shape ``(batch,)``,
       broadcast as ``dt.reshape(-1, *[1] * (x.ndim - 1))``; the field then receives ``t`` as
       that ``(batch,)`` tensor.
    6. Optional, FSAL (first same as last): ``fsal = True`` and
       ``_step_fsal(x, t, dt, f0) -> (x_next, err, f_next)``, where ``f0`` is ``f(t, x)`` or
       None and ``f_next`` is ``f(t + dt, x_next)``; the driver passes the ``f_next`` of the
       accepted step as the next ``f0``, so an accepted step costs one evaluation fewer.

    Parameters
    ----------
    field : callable ``f(t, x) -> dx/dt``, optional
        Batched, torchdiffeq convention. A bound method of an object (``system.rhs``) lets the
        stepper use that object's structure: ``jacobian(t, x)``, ``linear_operator(t)``,
        ``state_shape``.
    """

    order: ClassVar[int]
    explicit: ClassVar[bool]
    general: ClassVar[bool] = True
    name: ClassVar[str] = ""
    error_order: ClassVar[int | None] = None  # set with _step_with_error (contract item 4)
    per_sample: ClassVar[bool] = False  # tensor t, dt of shape (batch,) (item 5)
    fsal: ClassVar[bool] = False  # _step_fsal (item 6)

    def __init__(self, field=None, *, state_shape: tuple[int, ...] | None = None):
        super().__init__()
        if field is not None and not callable(field):
            raise TypeError(f"`field` must be callable as f(t, x), got {type(field).__name__}")
        self.field = field
        owner = field_owner(field)
        if isinstance(owner, nn.Module) and owner is not field:
            self.field_module = owner  # register parameters of a learned field's owner
        self.structure = owner
        self.state_shape = tuple(state_shape or getattr(owner, "state_shape", ()) or ()) or None
        self.counts = {"nfev": 0, "njev": 0}  # a dict: no nn.Module.__setattr__ per call
        self._check_field = True  # check the shape of the next field value (once per run)

    @property
    def nfev(self) -> int:
        """Field evaluations (each on a whole batch) since construction."""
        return self.counts["nfev"]

    @nfev.setter
    def nfev(self, value: int) -> None:
        self.counts["nfev"] = value

    @property
    def njev(self) -> int:
        """Jacobian evaluations (implicit steppers) since construction."""
        return self.counts["njev"]

    @njev.setter
    def njev(self, value: int) -> None:
        self.counts["njev"] = value

    def f(self, t, x: torch.Tensor) -> torch.Tensor:
        """Evaluate the field, counting evaluations in ``self.counts``."""
        self.counts["nfev"] += 1
        out = self.field(t, x)
        if self._check_field:
            self._check_field = False
            _checks.field_value(self.field, out, x)
        return out

    def forward(self, x: torch.Tensor, t=0.0, dt=None) -> torch.Tensor:
        self.check_call(x, dt)
        return self._step(x, t, dt)

    def step(self, x: torch.Tensor, t, dt) -> torch.Tensor:
        """One step ``x_{n+1}`` without input validation, for inner loops.

        Same arguments, shapes and result as ``stepper(x, t, dt)``, minus the checks of
        ``x``'s shape and dtype and of ``dt`` (call :meth:`check_call` once before the loop);
        per-sample steppers (``per_sample = True``) accept ``t``, ``dt`` of shape (batch,).
        """
        return self._step(x, t, dt)

    def check_call(self, x, dt) -> None:
        """Validate a state and a step size once (drivers call this before their loops)."""
        if dt is None:
            raise TypeError("`dt` is required: call stepper(x, t, dt)")
        _checks.positive("dt", dt)
        _checks.state("x", x, self.state_shape)
        self._check_field = True

    def _step(self, x: torch.Tensor, t, dt) -> torch.Tensor:
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"order={self.order}, explicit={self.explicit}"


REGISTRY: Registry[type[Stepper]] = Registry("stepper", Stepper)
register = REGISTRY.register


def get(name, field=None, **options) -> Stepper:
    """Build a stepper by registered name (or class) for the field ``f(t, x)``.

    >>> step = get("rk4", lambda t, x: -x)
    """
    return REGISTRY.resolve(name)(field, **options)


def names(general: bool | None = None) -> list[str]:
    """Registered stepper names; ``general=True`` keeps those that take any field f(t, x)."""
    if general is None:
        return REGISTRY.names()
    return REGISTRY.names(lambda c: c.general == general)

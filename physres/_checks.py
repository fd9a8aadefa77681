"""Input checks shared across physres: each raises ValueError/TypeError naming the argument."""

from __future__ import annotations

import math

import torch


def positive(name: str, value, *, allow_zero: bool = False) -> float:
    """Return ``value`` as float after checking it is finite and > 0 (or >= 0)."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(
                f"`{name}` must be a scalar, got a tensor of shape {tuple(value.shape)}"
            )
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"`{name}` must be a number, got {type(value).__name__}")
    value = float(value)
    ok = value >= 0 if allow_zero else value > 0
    if not (math.isfinite(value) and ok):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"`{name}` must be finite and {bound}, got {value!r}")
    return value


def positive_int(name: str, value, *, allow_zero: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"`{name}` must be an int, got {type(value).__name__}")
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else ">= 1"
        raise ValueError(f"`{name}` must be {bound}, got {value}")
    return value


def state(name: str, x, state_shape: tuple[int, ...] | None = None) -> torch.Tensor:
    """Check a batched state ``(batch, *state_shape)``: a finite floating/complex tensor."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(
            f"`{name}` must be a torch.Tensor of shape (batch, *state_shape), "
            f"got {type(x).__name__}"
        )
    if not (x.is_floating_point() or x.is_complex()):
        raise TypeError(f"`{name}` must be a floating or complex tensor, got dtype {x.dtype}")
    if x.dim() < 1:
        raise ValueError(f"`{name}` must have a leading batch dimension, got a 0-d tensor")
    if state_shape is not None and tuple(x.shape[1:]) != tuple(state_shape):
        raise ValueError(
            f"`{name}` must have shape (batch, {', '.join(map(str, state_shape))}), "
            f"got {tuple(x.shape)}"
        )
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"`{name}` contains non-finite values (nan or inf)")
    return x


def field_value(field, value, x: torch.Tensor) -> torch.Tensor:
    """Check that a field's value ``f(t, x)`` is a tensor of the shape of ``x`` (a wrong shape
    would otherwise broadcast silently into the state)."""
    if not isinstance(value, torch.Tensor) or tuple(value.shape) != tuple(x.shape):
        name = getattr(field, "__qualname__", None) or type(field).__name__
        got = (
            f"shape {tuple(value.shape)}"
            if isinstance(value, torch.Tensor)
            else type(value).__name__
        )
        raise ValueError(
            f"the field `{name}` returned {got} for a state of shape "
            f"{tuple(x.shape)}; f(t, x) must return dx/dt with the shape of x, "
            "batch dimension included"
        )
    return value


def step_function(stepper, x0: torch.Tensor, dt: float):
    """Validate ``x0`` and ``dt`` once for a run and return the unchecked step: a Stepper's
    ``step``, or any other callable ``(x, t, dt) -> x_next`` as it is."""
    check = getattr(stepper, "check_call", None)
    if check is None:
        state("x0", x0)
        return stepper
    check(x0, dt)
    return stepper.step


def default_device() -> torch.device:
    """``cuda`` when available, else ``cpu``."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")

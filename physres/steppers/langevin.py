"""Langevin steppers at temperature ``kT``: overdamped Euler–Maruyama and underdamped BAOAB.

Both draw their noise from a ``torch.Generator`` seeded by ``seed`` (or one passed as
``generator``), so a run is reproducible; :meth:`reseed` restarts the noise stream.
``temperature`` and ``friction`` default to the attributes of the field's owner (e.g. a
``bead_chain`` system passed as ``system.rhs``), else to 0 and 1.
"""

from __future__ import annotations

import math

import torch

from .. import _checks
from .base import Stepper, register


class _Langevin(Stepper):
    """Shared set-up: temperature, friction and a seeded noise generator."""

    explicit = True
    general = False

    def __init__(
        self,
        field=None,
        *,
        temperature: float | None = None,
        friction: float | None = None,
        seed: int = 0,
        generator: torch.Generator | None = None,
        state_shape=None,
    ):
        super().__init__(field, state_shape=state_shape)
        temperature = self._from_owner("temperature", temperature)
        friction = self._from_owner("friction", friction)
        self.temperature = _checks.positive("temperature", temperature, allow_zero=True)
        self.friction = _checks.positive("friction", friction)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(
                f"`generator` must be a torch.Generator, got {type(generator).__name__}"
            )
        self.seed = _checks.positive_int("seed", seed, allow_zero=True)
        self.generator = generator

    def _from_owner(self, name, value):
        if value is None:
            value = getattr(self.structure, name, None)
        if value is None:
            value = {"temperature": 0.0, "friction": 1.0}[name]
        return value

    def reseed(self, seed: int | None = None) -> None:
        """Restart the noise stream from ``seed`` (default: the constructor's ``seed``)."""
        if seed is not None:
            self.seed = _checks.positive_int("seed", seed, allow_zero=True)
        self.generator = None

    def _noise(self, like: torch.Tensor) -> torch.Tensor:
        """Standard normal noise shaped like ``like``. Float64 states get float32 draws cast
        up (several times cheaper on CPU; the normal is resolved to 2⁻²⁴ and its tails are
        cut beyond about 5.7σ, a probability below 10⁻⁸ per draw)."""
        if self.generator is None or self.generator.device != like.device:
            self.generator = torch.Generator(device=like.device).manual_seed(self.seed)
        dtype = torch.float32 if like.dtype == torch.float64 else like.dtype
        return torch.randn(
            like.shape, generator=self.generator, dtype=dtype, device=like.device
        ).to(like.dtype)


@register("euler_maruyama")
class EulerMaruyama(_Langevin):
    """Overdamped Langevin, Euler–Maruyama (Kloeden & Platen 1992):

    ``x_{n+1} = x_n + dt·f(t, x_n) + sqrt(2·kT·dt/γ)·ξ``,  ξ ~ N(0, I),

    for the drift ``f = −∇U/γ``. Strong order ½, weak order 1 (``order = 1``); at ``kT = 0``
    it is the explicit Euler step of the gradient flow.
    """

    order = 1

    def _step(self, x, t, dt):
        drift = self.f(t, x)
        if self.temperature == 0:
            return x + dt * drift
        scale = (2.0 * self.temperature * dt / self.friction) ** 0.5
        return x + dt * drift + scale * self._noise(x)


@register("baoab")
class BAOAB(_Langevin):
    """Underdamped Langevin, BAOAB splitting (Leimkuhler & Matthews 2013, Appl. Math. Res.
    Express. 2013, 34–56), unit mass:

    B: ``p += dt/2·F(q)``; A: ``q += dt/2·p``; O: ``p = c·p + sqrt((1 − c²)kT)·ξ`` with
    ``c = exp(−γ·dt)``; A; B.

    State (batch, 2, ...): positions ``x[:, 0]``, momenta ``x[:, 1]`` (the ``bead_chain``
    layout with ``dynamics="underdamped"``; any state whose flattened form splits into
    halves works). The force ``F(q)`` is read from the field as ``dp/dt`` at ``p = 0``, so the
    field's own friction term drops out. Weak order 2 (``order = 2``); configurational
    averages are accurate to O(dt²) and exact for harmonic forces in the high-friction limit.
    The force at the end of a step is reused by the next step when it receives that state.
    When the field is ``system.rhs`` of an owner with ``conservative_force(q)`` (positions
    (batch, *state_shape[1:]) → force), the force is taken from it directly.
    """

    order = 2

    def __init__(self, field=None, **options):
        super().__init__(field, **options)
        self._cache = None  # (state, version, force) of the last returned state

    def _force(self, t, q, shape):
        """``F(q)`` as (batch, n): from the owner's ``conservative_force`` when the field is
        its ``rhs`` (one call, no momenta), else ``dp/dt`` of the field at ``p = 0``."""
        direct = self._direct
        if direct is not None and len(shape) > 2 and shape[1] == 2:
            self.counts["nfev"] += 1
            return direct(q.reshape(shape[0], *shape[2:])).reshape(shape[0], -1)
        z = torch.cat([q, torch.zeros_like(q)], dim=1).reshape(shape)
        return self.f(t, z).reshape(shape[0], -1)[:, q.shape[1] :]

    @property
    def _direct(self):
        owner, field = self.structure, self.field
        force = getattr(owner, "conservative_force", None)
        if force is None or getattr(field, "__func__", None) is not getattr(
            type(owner), "rhs", None
        ):
            return None
        return force

    def _step(self, x, t, dt):
        b = x.shape[0]
        flat = x.reshape(b, -1)
        if flat.shape[1] % 2:
            raise ValueError(
                f"baoab needs a state that splits into (q, p) halves; got "
                f"{flat.shape[1]} components per sample"
            )
        n = flat.shape[1] // 2
        q, p = flat[:, :n], flat[:, n:]
        cache = self._cache
        if cache is not None and cache[0] is x and cache[1] == x._version:
            force = cache[2]
        else:
            force = self._force(t, q, x.shape)
        c = math.exp(-self.friction * dt)
        h = 0.5 * dt
        p = torch.add(p, force, alpha=h)
        q = torch.add(q, p, alpha=h)
        if self.temperature > 0:
            p = torch.add(c * p, self._noise(p), alpha=math.sqrt((1.0 - c * c) * self.temperature))
        else:
            p = c * p
        q = torch.add(q, p, alpha=h)
        force = self._force(t + dt, q, x.shape)
        p = torch.add(p, force, alpha=h)
        out = torch.cat([q, p], dim=1).reshape(x.shape)
        self._cache = (out, out._version, force)
        return out

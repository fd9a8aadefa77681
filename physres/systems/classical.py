"""Classical ODEs with known physics: oscillators, a limit cycle, chaos, predator–prey.

Every system here has a batched torch ``rhs``, an analytic ``jacobian`` and pure-numpy
adapters (``numpy_rhs``, ``numpy_jacobian``) so scipy references do not pay torch's per-call
overhead. Initial states come from a numpy generator seeded by ``seed`` (documented per class).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.special import ellipj, ellipk, ellipkinc

from .. import _checks
from ..steppers.linear import DenseOperator
from .base import System, register

# --- helpers shared with stiff.py ---------------------------------------------------------


def _matrix(rows) -> torch.Tensor:
    """Nested lists of ``(batch,)`` tensors → batched matrix ``(batch, n, m)``."""
    return torch.stack([torch.stack(row, dim=-1) for row in rows], dim=-2)


def _rng(seed) -> np.random.Generator:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"`seed` must be an int, got {type(seed).__name__}")
    return np.random.default_rng(int(seed))


def _count(n) -> int:
    return _checks.positive_int("n", n)


def _finite(name: str, value) -> float:
    """A finite real number of any sign."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"`{name}` must be a number, got {type(value).__name__}")
    if not np.isfinite(value):
        raise ValueError(f"`{name}` must be finite, got {value!r}")
    return float(value)


def _tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))


def _amplitude_phase(n: int, seed) -> tuple[np.ndarray, np.ndarray]:
    """Amplitudes uniform in [0.2, 1.5] and phases uniform in [0, 2π)."""
    g = _rng(seed)
    return g.uniform(0.2, 1.5, n), g.uniform(0.0, 2 * np.pi, n)


# --- systems ------------------------------------------------------------------------------


@register("harmonic_oscillator")
class HarmonicOscillator(System):
    """``q' = p, p' = -ω² q`` (mass 1): ``H = p²/2 + ω² q²/2``. State ``(q, p)``.

    ``sample_initial``: amplitude ``A ~ U[0.2, 1.5]`` and phase ``φ ~ U[0, 2π)``,
    ``q = A cos φ``, ``p = -A ω sin φ`` (the exact solution is ``q(t) = A cos(ωt + φ)``).
    Linear, so it declares ``linear_operator`` and has an exact ``solution``.
    """

    state_shape = (2,)
    t_end = 20.0
    dt_save = 0.05

    def __init__(self, omega: float = 1.0):
        self.omega = _checks.positive("omega", omega)
        super().__init__(omega=self.omega)
        self._A = torch.tensor([[0.0, 1.0], [-(self.omega**2), 0.0]], dtype=torch.float64)

    def rhs(self, t, x):
        return torch.stack([x[:, 1], -(self.omega**2) * x[:, 0]], dim=1)

    def jacobian(self, t, x):
        return self._A.to(x.device).expand(x.shape[0], 2, 2)

    def linear_operator(self, t):
        return DenseOperator(self._A)

    def numpy_rhs(self, t, y):
        return np.array([y[1], -(self.omega**2) * y[0]])

    def numpy_jacobian(self, t, y):
        return self._A.numpy().copy()

    def sample_initial(self, n, seed=0):
        amp, phase = _amplitude_phase(_count(n), seed)
        return _tensor(np.stack([amp * np.cos(phase), -amp * self.omega * np.sin(phase)], 1))

    def invariants(self, x):
        return {"energy": 0.5 * x[:, 1] ** 2 + 0.5 * self.omega**2 * x[:, 0] ** 2}

    def solution(self, x0: torch.Tensor, t) -> torch.Tensor:
        """Exact states ``(batch, n_t, 2)`` at times ``t`` (n_t,) from ``x0`` (batch, 2)."""
        w = self.omega
        t = torch.as_tensor(t, dtype=x0.dtype).reshape(1, -1)
        q0, p0 = x0[:, :1], x0[:, 1:]
        c, s = torch.cos(w * t), torch.sin(w * t)
        return torch.stack([q0 * c + p0 / w * s, -q0 * w * s + p0 * c], dim=-1)


@register("pendulum")
class Pendulum(System):
    """``q' = p, p' = -ω² sin q`` (ω² = g/L): ``H = p²/2 - ω² cos q``. State ``(q, p)``.

    ``sample_initial``: amplitude (largest angle, rad) ``θ ~ U[0.2, 1.5]`` and phase
    ``φ ~ U[0, 2π)`` along the exact libration orbit, ``q = 2 asin(k sn(u, k))``,
    ``p = 2kω cn(u, k)`` with ``k = sin(θ/2)``, ``u = K(k) + φ·4K(k)/(2π)``; ``solution``
    evaluates the same Jacobi-elliptic formula at later times.
    """

    state_shape = (2,)
    t_end = 20.0
    dt_save = 0.05

    def __init__(self, omega: float = 1.0):
        self.omega = _checks.positive("omega", omega)
        super().__init__(omega=self.omega)

    def rhs(self, t, x):
        return torch.stack([x[:, 1], -(self.omega**2) * torch.sin(x[:, 0])], dim=1)

    def jacobian(self, t, x):
        q = x[:, 0]
        z, one = torch.zeros_like(q), torch.ones_like(q)
        return _matrix([[z, one], [-(self.omega**2) * torch.cos(q), z]])

    def numpy_rhs(self, t, y):
        return np.array([y[1], -(self.omega**2) * np.sin(y[0])])

    def numpy_jacobian(self, t, y):
        return np.array([[0.0, 1.0], [-(self.omega**2) * np.cos(y[0]), 0.0]])

    def _orbit(self, amp: np.ndarray, u: np.ndarray) -> np.ndarray:
        k = np.sin(amp / 2)
        sn, cn, _, _ = ellipj(u, k**2)
        return np.stack([2 * np.arcsin(k * sn), 2 * k * self.omega * cn], axis=-1)

    def sample_initial(self, n, seed=0):
        amp, phase = _amplitude_phase(_count(n), seed)
        K = ellipk(np.sin(amp / 2) ** 2)
        return _tensor(self._orbit(amp, K + phase * 4 * K / (2 * np.pi)))

    def invariants(self, x):
        return {"energy": 0.5 * x[:, 1] ** 2 - self.omega**2 * torch.cos(x[:, 0])}

    def solution(self, x0: torch.Tensor, t) -> torch.Tensor:
        """Exact states ``(batch, n_t, 2)`` for librating ``x0`` (batch, 2) at times ``t``."""
        q0, p0 = x0[:, 0].numpy(), x0[:, 1].numpy()
        energy = 0.5 * p0**2 - self.omega**2 * np.cos(q0)
        ratio = -energy / self.omega**2
        if np.any(ratio <= -1):
            raise ValueError(
                "`x0` must librate (energy < ω²); rotating orbits have no closed form here"
            )
        amp = np.arccos(ratio)
        k = np.sin(amp / 2)
        # u0 with 2 asin(k sn u0) = q0 and sign(cn u0) = sign(p0): u0 = K ± F(asin(sn u0))
        s = np.clip(np.sin(q0 / 2) / k, -1.0, 1.0)
        F = ellipkinc(np.arcsin(s), k**2)
        K = ellipk(k**2)
        u0 = np.where(p0 >= 0, F, 2 * K - F)
        t = np.asarray(t, dtype=np.float64).reshape(1, -1)
        u = u0[:, None] + self.omega * t
        return _tensor(self._orbit(amp[:, None], u))


@register("van_der_pol")
class VanDerPol(System):
    """Van der Pol oscillator (van der Pol 1926), unscaled: ``q'' = μ(1 − q²)q' − q``.

    State ``(q, q')``; ``μ ≥ 0`` (``μ = 0`` is the harmonic oscillator). The relaxation
    oscillations at large ``μ`` make the problem stiff, so the reference method is ``Radau``
    (with the analytic Jacobian); for ``μ ≤ 10`` the problem is not stiff and an instance
    uses ``DOP853``, which is ~20× cheaper there at the same tolerances.
    ``sample_initial``: ``q, q' ~ U[-2, 2]`` independently. No conserved quantity.
    """

    state_shape = (2,)
    t_end = 20.0
    dt_save = 0.05
    reference_method = "Radau"
    reference_rtol = 1e-10
    reference_atol = 1e-12

    def __init__(self, mu: float = 1.0):
        self.mu = _checks.positive("mu", mu, allow_zero=True)
        super().__init__(mu=self.mu)
        if self.mu <= 10.0:
            self.reference_method = "DOP853"

    def rhs(self, t, x):
        q, v = x[:, 0], x[:, 1]
        return torch.stack([v, self.mu * (1 - q**2) * v - q], dim=1)

    def jacobian(self, t, x):
        q, v = x[:, 0], x[:, 1]
        z, one = torch.zeros_like(q), torch.ones_like(q)
        return _matrix([[z, one], [-2 * self.mu * q * v - 1, self.mu * (1 - q**2)]])

    def numpy_rhs(self, t, y):
        q, v = y
        return np.array([v, self.mu * (1 - q * q) * v - q])

    def numpy_jacobian(self, t, y):
        q, v = y
        return np.array([[0.0, 1.0], [-2 * self.mu * q * v - 1, self.mu * (1 - q * q)]])

    def sample_initial(self, n, seed=0):
        return _tensor(_rng(seed).uniform(-2.0, 2.0, (_count(n), 2)))


@register("lorenz63")
class Lorenz63(System):
    """Lorenz's convection model (Lorenz 1963): ``x' = σ(y − x)``, ``y' = x(ρ − z) − y``,
    ``z' = xy − βz``; chaotic at the defaults ``σ = 10, ρ = 28, β = 8/3``.

    ``sample_initial``: ``x, y ~ U[-15, 15]``, ``z ~ U[5, 40]`` (a box around the attractor;
    trajectories reach it within about one time unit). No conserved quantity.
    """

    state_shape = (3,)
    t_end = 20.0
    dt_save = 0.01

    def __init__(self, sigma: float = 10.0, rho: float = 28.0, beta: float = 8.0 / 3.0):
        self.sigma = _checks.positive("sigma", sigma)
        self.rho = _checks.positive("rho", rho, allow_zero=True)
        self.beta = _checks.positive("beta", beta)
        super().__init__(sigma=self.sigma, rho=self.rho, beta=self.beta)

    def rhs(self, t, x):
        a, b, c = x[:, 0], x[:, 1], x[:, 2]
        return torch.stack(
            [self.sigma * (b - a), a * (self.rho - c) - b, a * b - self.beta * c], dim=1
        )

    def jacobian(self, t, x):
        a, b, c = x[:, 0], x[:, 1], x[:, 2]
        z = torch.zeros_like(a)
        s, one = torch.full_like(a, self.sigma), torch.ones_like(a)
        return _matrix(
            [[-s, s, z], [self.rho - c, -one, -a], [b, a, torch.full_like(a, -self.beta)]]
        )

    def numpy_rhs(self, t, y):
        a, b, c = y
        return np.array([self.sigma * (b - a), a * (self.rho - c) - b, a * b - self.beta * c])

    def numpy_rhs_batch(self, t, y):
        a, b, c = y[:, 0], y[:, 1], y[:, 2]
        return np.stack(
            [self.sigma * (b - a), a * (self.rho - c) - b, a * b - self.beta * c], axis=1
        )

    def numpy_jacobian(self, t, y):
        a, b, c = y
        return np.array(
            [[-self.sigma, self.sigma, 0.0], [self.rho - c, -1.0, -a], [b, a, -self.beta]]
        )

    def sample_initial(self, n, seed=0):
        g = _rng(seed)
        n = _count(n)
        xy = g.uniform(-15.0, 15.0, (n, 2))
        return _tensor(np.concatenate([xy, g.uniform(5.0, 40.0, (n, 1))], axis=1))


@register("lotka_volterra")
class LotkaVolterra(System):
    """Predator–prey (Lotka 1925, Volterra 1926): ``u' = αu − βuv``, ``v' = δuv − γv``.

    Conserves ``V = δu − γ ln u + βv − α ln v`` on the positive quadrant.
    ``sample_initial``: ``u, v ~ U[0.5, 2]`` independently.
    """

    state_shape = (2,)
    t_end = 20.0
    dt_save = 0.05

    def __init__(
        self, alpha: float = 1.0, beta: float = 1.0, gamma: float = 1.0, delta: float = 1.0
    ):
        self.alpha = _checks.positive("alpha", alpha)
        self.beta = _checks.positive("beta", beta)
        self.gamma = _checks.positive("gamma", gamma)
        self.delta = _checks.positive("delta", delta)
        super().__init__(alpha=self.alpha, beta=self.beta, gamma=self.gamma, delta=self.delta)

    def rhs(self, t, x):
        u, v = x[:, 0], x[:, 1]
        return torch.stack(
            [self.alpha * u - self.beta * u * v, self.delta * u * v - self.gamma * v], dim=1
        )

    def jacobian(self, t, x):
        u, v = x[:, 0], x[:, 1]
        return _matrix(
            [
                [self.alpha - self.beta * v, -self.beta * u],
                [self.delta * v, self.delta * u - self.gamma],
            ]
        )

    def numpy_rhs(self, t, y):
        u, v = y
        return np.array([self.alpha * u - self.beta * u * v, self.delta * u * v - self.gamma * v])

    def numpy_jacobian(self, t, y):
        u, v = y
        return np.array(
            [
                [self.alpha - self.beta * v, -self.beta * u],
                [self.delta * v, self.delta * u - self.gamma],
            ]
        )

    def sample_initial(self, n, seed=0):
        return _tensor(_rng(seed).uniform(0.5, 2.0, (_count(n), 2)))

    def invariants(self, x):
        u, v = x[:, 0], x[:, 1]
        return {
            "first_integral": self.delta * u
            - self.gamma * torch.log(u)
            + self.beta * v
            - self.alpha * torch.log(v)
        }


@register("lorenz96")
class Lorenz96(System):
    """Lorenz's ring of ``N`` sites (Lorenz 1996): ``x_i' = (x_{i+1} − x_{i−2}) x_{i−1} − x_i + F``
    with periodic indices; chaotic for ``N = 40, F = 8`` (λ1 ≈ 1.7; Karimi & Paul 2010).

    The quadratic term conserves ``E = ½ Σ x_i²`` (``Σ x_i (x_{i+1} − x_{i−2}) x_{i−1} = 0``), so
    ``dE/dt = −2E + F Σ x_i``: damping and forcing balance on the attractor.
    ``sample_initial``: ``x = F + U[-1, 1]`` per site, then a spin-up of 10 time units by RK4
    (``dt = 0.01``) onto the attractor. Invariant ``energy`` (monitored, not conserved).
    """

    t_end = 20.0
    dt_save = 0.01
    spin_up = 10.0

    def __init__(self, N: int = 40, F: float = 8.0):
        self.N = _checks.positive_int("N", N)
        if self.N < 4:
            raise ValueError(f"`N` must be >= 4 (the stencil spans i-2..i+1), got {N!r}")
        self.F = _finite("F", F)
        self.state_shape = (self.N,)
        super().__init__(N=self.N, F=self.F)

    def rhs(self, t, x):
        return (torch.roll(x, -1, 1) - torch.roll(x, 2, 1)) * torch.roll(x, 1, 1) - x + self.F

    def jacobian(self, t, x):
        n, b = self.N, x.shape[0]
        i = torch.arange(n)
        J = -torch.eye(n, dtype=x.dtype).repeat(b, 1, 1)
        J[:, i, (i + 1) % n] += x[:, (i - 1) % n]
        J[:, i, (i - 2) % n] -= x[:, (i - 1) % n]
        J[:, i, (i - 1) % n] += x[:, (i + 1) % n] - x[:, (i - 2) % n]
        return J

    def numpy_rhs(self, t, y):
        return (np.roll(y, -1) - np.roll(y, 2)) * np.roll(y, 1) - y + self.F

    def numpy_jacobian(self, t, y):
        return self.jacobian(t, torch.from_numpy(np.asarray(y, dtype=np.float64))[None])[0].numpy()

    def sample_initial(self, n, seed=0):
        g = _rng(seed)
        x = _tensor(self.F + g.uniform(-1.0, 1.0, (_count(n), self.N)))
        h = 0.01
        for _ in range(int(round(self.spin_up / h))):  # RK4 onto the attractor
            k1 = self.rhs(0.0, x)
            k2 = self.rhs(0.0, x + 0.5 * h * k1)
            k3 = self.rhs(0.0, x + 0.5 * h * k2)
            k4 = self.rhs(0.0, x + h * k3)
            x = x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        return x

    def invariants(self, x):
        return {"energy": 0.5 * (x * x).sum(1)}

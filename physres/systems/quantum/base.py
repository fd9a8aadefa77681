"""Common parts of the grid quantum systems: parameters, grid, Hamiltonian, packets, norm."""

from __future__ import annotations

import math

import numpy as np
import torch

from ..base import System
from .grid import Grid1D
from .hamiltonian import Hamiltonian
from .potentials import dipole_field, potential_values


class QuantumSystem(System):
    """Base of ``iħ ∂ψ/∂t = H[ρ](t) ψ`` on a 1-D grid, ``H[ρ] = T + v_eff(t, ρ)``.

    Subclass contract (the quantum steppers rely on it):

    1. ``density(x)`` → ``ρ``, shape (batch, n_grid);
    2. ``effective_potential(t, rho)`` → real potential broadcastable against ``x``;
    3. ``rhs`` is then ``-(i/ħ)(T x + v_eff x)`` (provided here).

    Attributes: ``grid`` (numpy (n,) coordinates), ``grid1d`` (:class:`Grid1D`),
    ``hamiltonian`` (the one-body :class:`Hamiltonian` with the external potential and field).
    """

    dtype = torch.complex128
    nonlinear = False  # True when the potential depends on the density
    reference_rtol = 1e-10
    reference_atol = 1e-12

    def __init__(
        self,
        *,
        n,
        x_min,
        x_max,
        potential,
        potential_params,
        kinetic,
        boundary,
        hbar,
        mass,
        field,
        field_amplitude,
        field_omega,
        field_duration,
        **extra,
    ):
        from ... import _checks

        hbar = _checks.positive("hbar", hbar)
        mass = _checks.positive("mass", mass)
        if boundary is None:
            boundary = "periodic" if kinetic == "spectral" else "dirichlet"
        self.grid1d = Grid1D(n, x_min, x_max, boundary)
        V = potential_values(potential, self.grid1d.x_np, mass, potential_params)
        E = dipole_field(field, field_amplitude, field_omega, field_duration)
        self.hamiltonian = Hamiltonian(self.grid1d, V, kinetic, hbar, mass, E)
        self.hamiltonian.check_hermitian()
        self.hbar, self.mass = hbar, mass
        self.grid = self.grid1d.x_np
        self.time_dependent = E is not None
        name = (
            potential
            if isinstance(potential, str)
            else f"callable:{getattr(potential, '__qualname__', type(potential).__name__)}"
        )
        super().__init__(
            n=n,
            x_min=float(x_min),
            x_max=float(x_max),
            potential=name,
            potential_params=dict(potential_params or {}),
            kinetic=kinetic,
            boundary=boundary,
            hbar=hbar,
            mass=mass,
            field=field,
            field_amplitude=float(field_amplitude),
            field_omega=float(field_omega),
            field_duration=float(field_duration),
            **extra,
        )

    @property
    def dx(self) -> float:
        return self.grid1d.dx

    # --- the field -------------------------------------------------------------------------
    def density(self, x: torch.Tensor) -> torch.Tensor:
        return x.abs() ** 2

    def effective_potential(self, t, rho: torch.Tensor) -> torch.Tensor:
        return self.hamiltonian.potential_at(t)

    def rhs(self, t, x):
        v = self.effective_potential(t, self.density(x))
        return self.hamiltonian.apply(x, t, potential=v) * (-1j / self.hbar)

    # --- observables -----------------------------------------------------------------------
    def norm(self, x: torch.Tensor) -> torch.Tensor:
        """``Σ|ψ|² dx`` (summed over orbitals), shape (batch,)."""
        return self.grid1d.integrate(x.abs() ** 2).reshape(x.shape[0], -1).sum(-1)

    def position(self, x: torch.Tensor) -> torch.Tensor:
        """``⟨x⟩ = Σ x ρ dx``, shape (batch,)."""
        return self.grid1d.integrate(self.grid1d.x.to(x.device) * self.density(x))

    def gaussian_packet(self, x0, k0, sigma) -> torch.Tensor:
        """``(2πσ²)^(-1/4) exp(-(x - x0)²/(4σ²) + i k0 x)`` normalised on the grid; arguments
        are arrays of shape (batch,); returns (batch, n). ``σ`` is the std of ``|ψ|²``."""
        x = self.grid1d.x_np[None, :]
        x0, k0, s = (np.asarray(a, dtype=np.float64).reshape(-1, 1) for a in (x0, k0, sigma))
        psi = np.exp(-((x - x0) ** 2) / (4 * s**2) + 1j * k0 * x)
        psi /= np.sqrt((np.abs(psi) ** 2).sum(-1, keepdims=True) * self.dx)
        return torch.from_numpy(psi)

    def _random_packets(self, n: int, seed: int, sigma: float, k_max: float) -> torch.Tensor:
        """Centre ~ U(c − L/5, c + L/5) (c the box centre, L its length), momentum
        ~ U(−k_max, k_max), width ~ U(0.7σ, 1.3σ)."""
        from ... import _checks

        n = _checks.positive_int("n", n)
        rng = np.random.default_rng(seed)
        g = self.grid1d
        c, L = 0.5 * (g.x_min + g.x_max), g.length
        x0 = rng.uniform(c - L / 5, c + L / 5, n)
        k0 = rng.uniform(-k_max, k_max, n)
        s = rng.uniform(0.7 * sigma, 1.3 * sigma, n)
        return self.gaussian_packet(x0, k0, s)


def _check_packet(sigma, k_max, grid) -> tuple[float, float]:
    from ... import _checks

    sigma = _checks.positive("sigma", sigma)
    k_max = _checks.positive("k_max", k_max, allow_zero=True)
    if k_max > 0.5 * math.pi / grid.dx:
        raise ValueError(
            f"`k_max` = {k_max} is not resolved by the grid (dx = {grid.dx:.3g}); "
            f"keep it below π/(2·dx) = {0.5 * math.pi / grid.dx:.3g}"
        )
    return sigma, k_max

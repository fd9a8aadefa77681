"""The 1-D Gross–Pitaevskii equation ``iħψ_t = (T + V + g|ψ|²)ψ``."""

from __future__ import annotations

import math

import numpy as np
import torch

from ..base import register
from .base import QuantumSystem, _check_packet


@register("gross_pitaevskii_1d")
class GrossPitaevskii1D(QuantumSystem):
    """Mean-field condensate with contact interaction ``g|ψ|²`` (attractive for ``g < 0``).

    Parameters as :class:`~physres.systems.quantum.Schrodinger1D`, plus ``g`` (default −1) and
    defaults suited to solitons: free space, spectral kinetic, periodic box [−20, 20].
    The field is nonlinear: implicit steppers use Newton–Krylov; ``split_operator``,
    ``exponential_midpoint`` and ``etrs`` use the frozen potential ``V + g|ψ|²``.
    """

    t_end = 10.0
    dt_save = 0.1
    nonlinear = True

    def __init__(
        self,
        n: int = 256,
        x_min: float = -20.0,
        x_max: float = 20.0,
        potential="free",
        potential_params: dict | None = None,
        kinetic: str = "spectral",
        boundary: str | None = None,
        g: float = -1.0,
        hbar: float = 1.0,
        mass: float = 1.0,
        field: str = "none",
        field_amplitude: float = 0.0,
        field_omega: float = 1.0,
        field_duration: float = 10.0,
        sigma: float = 1.0,
        k_max: float = 1.0,
    ):
        if isinstance(g, bool) or not isinstance(g, (int, float)) or not math.isfinite(g):
            raise ValueError(f"`g` must be a finite number, got {g!r}")
        super().__init__(
            n=n,
            x_min=x_min,
            x_max=x_max,
            potential=potential,
            potential_params=potential_params,
            kinetic=kinetic,
            boundary=boundary,
            hbar=hbar,
            mass=mass,
            field=field,
            field_amplitude=field_amplitude,
            field_omega=field_omega,
            field_duration=field_duration,
            g=float(g),
            sigma=float(sigma),
            k_max=float(k_max),
        )
        self.g = float(g)
        self.sigma, self.k_max = _check_packet(sigma, k_max, self.grid1d)
        self.state_shape = (n,)

    def effective_potential(self, t, rho):
        return self.hamiltonian.potential_at(t).to(rho.device) + self.g * rho

    def invariants(self, x):
        """``norm`` and ``energy`` ⟨T + V⟩ + (g/2)Σ|ψ|⁴dx (conserved without a field)."""
        rho = self.density(x)
        e = self.hamiltonian.expectation(x, 0.0) + 0.5 * self.g * self.grid1d.integrate(rho**2)
        return {"norm": self.norm(x), "energy": e}

    def bright_soliton(self, t, x0, velocity, amplitude) -> torch.Tensor:
        """The exact bright soliton of free space (``g < 0``), shape (batch, n):

        ``a·sech(κ(x − x0 − vt))·exp(i(m v x − (m v²/2 + μ)t)/ħ)`` with ``κ = a√(m|g|)/ħ`` and
        ``μ = −ħ²κ²/2m``; its norm is ``2a²/κ = 2aħ/√(m|g|)``. Arguments broadcast over the
        batch (arrays of shape (batch,)).
        """
        if self.g >= 0:
            raise ValueError("`g` must be negative for a bright soliton")
        m, hb = self.mass, self.hbar
        x = self.grid1d.x_np[None, :]
        x0, v, a = (
            np.asarray(q, dtype=np.float64).reshape(-1, 1) for q in (x0, velocity, amplitude)
        )
        kappa = a * math.sqrt(m * abs(self.g)) / hb
        mu = -(hb**2) * kappa**2 / (2 * m)
        psi = (
            a
            / np.cosh(kappa * (x - x0 - v * t))
            * np.exp(1j * (m * v * x - (m * v**2 / 2 + mu) * t) / hb)
        )
        return torch.from_numpy(psi)

    def sample_initial(self, n: int, seed: int = 0) -> torch.Tensor:
        """For ``g < 0``: bright solitons with centre ~ U(c − L/5, c + L/5), velocity
        ~ U(−k_max, k_max)·ħ/m and amplitude ~ U(0.8, 1.2). For ``g ≥ 0``: Gaussian packets as
        in ``schrodinger_1d``. Shape (n, n_grid)."""
        if self.g >= 0:
            return self._random_packets(n, seed, self.sigma, self.k_max)
        from ... import _checks

        n = _checks.positive_int("n", n)
        rng = np.random.default_rng(seed)
        g = self.grid1d
        c, L = 0.5 * (g.x_min + g.x_max), g.length
        x0 = rng.uniform(c - L / 5, c + L / 5, n)
        v = rng.uniform(-self.k_max, self.k_max, n) * self.hbar / self.mass
        a = rng.uniform(0.8, 1.2, n)
        return self.bright_soliton(0.0, x0, v, a)

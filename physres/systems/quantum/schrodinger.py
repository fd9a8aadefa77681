"""The linear time-dependent Schrödinger equation ``iħ ∂ψ/∂t = H(t) ψ`` on a 1-D grid."""

from __future__ import annotations

import torch

from ..base import register
from .base import QuantumSystem, _check_packet


@register("schrodinger_1d")
class Schrodinger1D(QuantumSystem):
    """``ψ' = -(i/ħ)(T + V(x) + E(t)·x) ψ``; state ``(batch, n)`` complex128.

    Parameters
    ----------
    n, x_min, x_max : grid (see :class:`~physres.systems.quantum.Grid1D`).
    potential : "free", "harmonic", "barrier", "double_well", "soft_coulomb" or callable V(x).
    potential_params : dict overriding the named potential's defaults (e.g. ``{"omega": 2}``).
    kinetic : "fd3" (default), "fd5" or "spectral".
    boundary : "dirichlet" or "periodic"; default periodic for spectral, else dirichlet.
    hbar, mass : atomic units by default (1, 1).
    field : "none", "cw" or "pulse" — the dipole coupling ``E(t)·x``
        (see :func:`~physres.systems.quantum.dipole_field`), with ``field_amplitude``,
        ``field_omega``, ``field_duration``.
    sigma, k_max : initial packets (:meth:`sample_initial`).

    The field is linear: ``linear_operator(t)`` is a banded operator (fd kinetic; implicit
    steps are one O(N) band solve) or a matrix-free spectral one (FFT-preconditioned GMRES).
    """

    t_end = 10.0
    dt_save = 0.1

    def __init__(
        self,
        n: int = 256,
        x_min: float = -20.0,
        x_max: float = 20.0,
        potential="harmonic",
        potential_params: dict | None = None,
        kinetic: str = "fd3",
        boundary: str | None = None,
        hbar: float = 1.0,
        mass: float = 1.0,
        field: str = "none",
        field_amplitude: float = 0.0,
        field_omega: float = 1.0,
        field_duration: float = 10.0,
        sigma: float = 1.0,
        k_max: float = 1.0,
    ):
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
            sigma=float(sigma),
            k_max=float(k_max),
        )
        self.sigma, self.k_max = _check_packet(sigma, k_max, self.grid1d)
        self.state_shape = (n,)
        self.reference_method = "DOP853" if self.time_dependent else "expm"

    def linear_operator(self, t):
        """``A(t) = -(i/ħ) H(t)`` (cached when ``H`` does not depend on ``t``)."""
        return self.hamiltonian.operator(t)

    def sample_initial(self, n: int, seed: int = 0) -> torch.Tensor:
        """Gaussian packets ``(2πσ²)^(-1/4) exp(-(x-x0)²/4σ² + ik0x)``, normalised on the grid:
        centre ~ U(c − L/5, c + L/5) (box centre c, length L), momentum ~ U(−k_max, k_max),
        width (std of |ψ|²) ~ U(0.7·sigma, 1.3·sigma). Shape (n, n_grid)."""
        return self._random_packets(n, seed, self.sigma, self.k_max)

    def invariants(self, x):
        """``norm`` Σ|ψ|²dx and ``energy`` ⟨ψ|H(0)|ψ⟩ (conserved when there is no field)."""
        return {"norm": self.norm(x), "energy": self.hamiltonian.expectation(x, 0.0)}

    def eigenstates(self, k: int, t=0.0):
        """The ``k`` lowest eigenpairs of ``H(t)``: energies (k,), states (k, n), Σ|φ|²dx = 1."""
        return self.hamiltonian.eigenstates(k, t)

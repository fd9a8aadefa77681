"""A unitary quantum emulator: a learned Hermitian correction to a known H, Cayley-stepped.

``H_θ = H₀ + diag(δv) + Σ_k (δw_k on the ±k-th diagonals)`` is real symmetric, hence Hermitian,
for any parameters; the step ``ψ' = (I + iΔtH_θ/2ħ)⁻¹(I − iΔtH_θ/2ħ)ψ = 2(I + iΔtH_θ/2ħ)⁻¹ψ − ψ``
is then unitary by construction (norm kept to round-off whatever was learned). With no ``system``
the operator is learned from scratch (``H₀ = 0``). A finite-difference ``H₀`` keeps ``H_θ``
banded, so a step is one O(N) band solve (:func:`physres.steppers.banded.solve_banded`),
differentiable in ``θ``; a spectral ``H₀`` is dense and solved densely.

For interacting electrons (Kohn–Sham) the state is ``(n_orb, n)`` orbitals sharing one
Hamiltonian, and ``density_kernel=True`` adds a learned mean-field potential
``v_θ[ρ](x_i) = Σ_j w_θ(|i − j|) ρ_j dx`` of the density ``ρ = Σ_k f_k |φ_k|²`` (a learned,
translation-invariant Hartree-exchange kernel, zero at start). ``H_θ[ρ]`` is then evaluated at
the midpoint density from a predictor, as :class:`~physres.steppers.quantum.CrankNicolsonPC`
does: still unitary for any parameters. The unconstrained
counterpart is ``ResNetEmulator(state_shape=(n,), complex_state=True, net="conv1d")`` on
(Re, Im) channels.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..steppers.banded import cayley_banded
from .base import LearnedStepper, register


@register("unitary_cayley")
class UnitaryCayleyEmulator(LearnedStepper):
    """Unitary emulator of ``iħψ' = Hψ`` on a 1-D grid.

    Parameters
    ----------
    state_shape : (n,), or (n_orb, n) for orbitals sharing one Hamiltonian
    system : grid quantum system, optional — its one-body ``H(0) = T + V_ext`` is the known
        part ``H₀`` (for Kohn–Sham: without Hartree and exchange, which are learned).
    bandwidth : number of learned off-diagonals of the symmetric correction (default 1).
    hbar : used when there is no system (default 1).
    complex_state : must be True (the state is a wavefunction; accepted so that
        :func:`physres.training.model_for` builds this model like any other).
    dt : the training step (the emulator steps at any ``dt``: it is a Hamiltonian).
    density_kernel : learn a density-dependent potential ``w_θ ⋆ ρ`` (see above).
    occupations : ``f_k`` per orbital for the density (default: the system's, else 1).
    """

    def __init__(
        self,
        state_shape,
        *,
        system=None,
        bandwidth: int = 1,
        hbar: float = 1.0,
        complex_state: bool = True,
        dt: float | None = None,
        density_kernel: bool = False,
        occupations=None,
    ):
        if not complex_state:
            raise ValueError(
                "`complex_state` must be True: UnitaryCayleyEmulator steps complex "
                "wavefunctions (got False; is the data file of a real system?)"
            )
        super().__init__(state_shape, complex_state=True, dt=dt)
        if len(self.state_shape) not in (1, 2):
            raise ValueError(f"`state_shape` must be (n,) or (n_orb, n), got {self.state_shape}")
        n, n_orb = self.state_shape[-1], math.prod(self.state_shape[:-1])
        if (
            isinstance(bandwidth, bool)
            or not isinstance(bandwidth, int)
            or not 0 <= bandwidth < n // 2
        ):
            raise ValueError(f"`bandwidth` must be an int in [0, {n // 2 - 1}], got {bandwidth!r}")
        self.bandwidth = bandwidth
        self.periodic, self.banded = False, True  # banded: H0 in band storage (p + 1, n)
        if system is None:
            H0 = torch.zeros(bandwidth + 1, n, dtype=torch.float64)
        else:
            if getattr(system, "grid1d", None) is None or system.grid1d.n != n:
                raise ValueError(
                    f"`system` must be a grid quantum system with n = {n} points, "
                    f"got {type(system).__name__}"
                )
            hbar = system.hbar
            ham = system.hamiltonian
            self.periodic = system.grid1d.boundary == "periodic"
            if ham.kinetic == "spectral":  # no band form: H₀ dense, (n, n)
                H0 = (system.linear_operator(0.0).dense() * (1j * hbar)).real
                self.banded = False
            else:
                H0 = torch.from_numpy(ham.kinetic_bands())
                H0[0] += ham.potential_at(0.0)
        if self.banded and H0.shape[0] < bandwidth + 1:
            H0 = torch.cat([H0, H0.new_zeros(bandwidth + 1 - H0.shape[0], n)])
        self.register_buffer("H0", H0.to(torch.float64))
        self.hbar = float(hbar)
        self.dv = nn.Parameter(torch.zeros(n, dtype=torch.float64))
        self.dw = nn.Parameter(torch.zeros(bandwidth, n - 1, dtype=torch.float64))
        if occupations is None:
            occupations = getattr(system, "occupations", None)
        occ = (
            torch.ones(n_orb, dtype=torch.float64)
            if occupations is None
            else torch.as_tensor(occupations, dtype=torch.float64).reshape(-1)
        )
        if occ.numel() != n_orb:
            raise ValueError(
                f"`occupations` must have one entry per orbital ({n_orb}), got {occ.numel()}"
            )
        self.register_buffer("occupations", occ)
        self.dx = float(system.dx) if system is not None else 1.0
        self.kernel = None
        if density_kernel:
            if not self.banded:
                raise ValueError("`density_kernel` needs a finite-difference (banded) H₀")
            self.kernel = nn.Parameter(torch.zeros(n, dtype=torch.float64))

    def bands(self) -> torch.Tensor:
        """``H_θ`` in symmetric band storage ``(p + 1, n)`` (banded ``H₀`` only)."""
        n = self.H0.shape[1]
        rows = [self.H0[0] + self.dv]
        for k in range(1, self.H0.shape[0]):
            row = self.H0[k]
            if k <= self.bandwidth:
                row = row + nn.functional.pad(self.dw[k - 1, : n - k], (0, k))
            rows.append(row)
        return torch.stack(rows)

    def hamiltonian(self) -> torch.Tensor:
        """``H_θ`` as a dense (n, n) real symmetric matrix (for analysis and small grids)."""
        if not self.banded:
            H = self.H0 + torch.diag(self.dv)
            n = H.shape[0]
            for k in range(1, self.bandwidth + 1):
                band = torch.diag(self.dw[k - 1, : n - k], k)
                H = H + band + band.T
            return H
        bands = self.bands()
        n = bands.shape[1]
        H = torch.diag(bands[0])
        idx = torch.arange(n, device=bands.device)
        for k in range(1, bands.shape[0]):
            keep = idx if self.periodic else idx[: n - k]
            band = torch.zeros(n, n, dtype=bands.dtype, device=bands.device)
            band = band.index_put((keep, (keep + k) % n), bands[k, keep])
            H = H + band + band.T
        return H

    def density_potential(self, rho: torch.Tensor) -> torch.Tensor:
        """``v_θ[ρ] = (w_θ ⋆ ρ)·dx``, shape (batch, n) (zero without ``density_kernel``)."""
        if self.kernel is None:
            return torch.zeros_like(rho)
        n = rho.shape[-1]
        idx = torch.arange(n, device=rho.device)
        W = self.kernel[(idx[:, None] - idx[None, :]).abs()]  # symmetric Toeplitz
        return (rho @ W) * self.dx

    def _step(self, x, t, dt):
        c = 0.5j * float(dt) / self.hbar
        n = self.state_shape[-1]
        flat = x.reshape(x.shape[0], -1, n).to(torch.complex128)
        if not self.banded:
            H = self.hamiltonian().to(torch.complex128)
            eye = torch.eye(n, dtype=H.dtype, device=H.device)
            y = torch.linalg.solve(eye + c * H, flat.reshape(-1, n).T).T.reshape(flat.shape)
            return (2 * y - flat).reshape(x.shape).to(x.dtype)
        bands = self.bands()
        v = None
        if self.kernel is not None:  # predictor–corrector on the density, as crank_nicolson_pc
            rho = self._density(flat)
            pred = cayley_banded(
                bands, -c, flat, self.density_potential(rho), periodic=self.periodic
            )
            v = self.density_potential(0.5 * (rho + self._density(pred)))
        return (
            cayley_banded(bands, -c, flat, v, periodic=self.periodic).reshape(x.shape).to(x.dtype)
        )

    def _density(self, psi):
        return torch.einsum("k,bkn->bn", self.occupations.to(psi.device), psi.abs() ** 2)

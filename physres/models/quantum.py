"""A unitary quantum emulator: a learned Hermitian correction to a known H, Cayley-stepped.

``H_θ = H₀ + diag(δv) + Σ_k (δw_k on the ±k-th diagonals)`` is real symmetric, hence Hermitian,
for any parameters; the step ``ψ' = (I + iΔtH_θ/2ħ)⁻¹(I − iΔtH_θ/2ħ)ψ`` is then unitary by
construction (norm kept to round-off whatever was learned). With no ``system`` the operator is
learned from scratch (``H₀ = 0``). The unconstrained counterpart is
``ResNetEmulator(state_shape=(n,), complex_state=True, net="conv1d")`` on (Re, Im) channels.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import LearnedStepper, register


@register("unitary_cayley")
class UnitaryCayleyEmulator(LearnedStepper):
    """Unitary emulator of ``iħψ' = Hψ`` on a 1-D grid.

    Parameters
    ----------
    state_shape : (n,)
    system : schrodinger_1d system, optional — its ``H(0)`` is the known part ``H₀``.
    bandwidth : number of learned off-diagonals of the symmetric correction (default 1).
    hbar : used when there is no system (default 1).
    complex_state : must be True (the state is a wavefunction; accepted so that
        :func:`physres.training.model_for` builds this model like any other).
    dt : the training step (the emulator steps at any ``dt``: it is a Hamiltonian).
    """

    def __init__(self, state_shape, *, system=None, bandwidth: int = 1, hbar: float = 1.0,
                 complex_state: bool = True, dt: float | None = None):
        if not complex_state:
            raise ValueError("`complex_state` must be True: UnitaryCayleyEmulator steps complex "
                             "wavefunctions (got False; is the data file of a real system?)")
        super().__init__(state_shape, complex_state=True, dt=dt)
        (n,) = self.state_shape
        if system is not None:
            H0 = (system.linear_operator(0.0).dense() * (1j * system.hbar)).real
            hbar = system.hbar
        else:
            H0 = torch.zeros(n, n, dtype=torch.float64)
        self.register_buffer("H0", H0.to(torch.float64))
        self.hbar = float(hbar)
        self.bandwidth = int(bandwidth)
        self.dv = nn.Parameter(torch.zeros(n, dtype=torch.float64))
        self.dw = nn.Parameter(torch.zeros(self.bandwidth, n - 1, dtype=torch.float64))

    def hamiltonian(self) -> torch.Tensor:
        """``H_θ``, shape (n, n), real symmetric."""
        H = self.H0 + torch.diag(self.dv)
        n = self.H0.shape[0]
        for k in range(1, self.bandwidth + 1):
            band = torch.diag(self.dw[k - 1, : n - k], k)
            H = H + band + band.T
        return H

    def _step(self, x, t, dt):
        H = self.hamiltonian().to(torch.complex128)
        eye = torch.eye(H.shape[0], dtype=H.dtype, device=H.device)
        c = 0.5j * float(dt) / self.hbar
        plus, minus = eye + c * H, eye - c * H
        flat = x.reshape(x.shape[0], -1).to(torch.complex128)
        out = torch.linalg.solve(plus, minus @ flat.T).T
        return out.reshape(x.shape).to(x.dtype)

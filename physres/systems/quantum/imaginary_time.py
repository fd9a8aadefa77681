"""Ground states by imaginary-time propagation: ``ψ ← (I + Δτ(H[ρ] − σ)/ħ)⁻¹ ψ``, then
orthonormalisation and a Rayleigh–Ritz rotation of the states."""

from __future__ import annotations

import math

import torch
from tqdm.auto import tqdm

from ... import _checks
from ...errors import ConvergenceError


def ground_state_imaginary_time(
    system,
    n_states: int | None = None,
    dtau: float = 0.5,
    tol: float = 1e-10,
    max_iter: int = 5000,
    x0=None,
    progress: bool = False,
):
    """Lowest eigenstates of a grid quantum system by implicit imaginary-time steps.

    Each step is one backward-Euler step of ``∂ψ/∂τ = −(H[ρ] − σ)ψ/ħ`` (the density-dependent
    ``H`` frozen over the step), with the shift ``σ = min V − 1`` below the spectrum so every
    step is a contraction onto the low states; its fixed point is an exact eigenvector of the
    discrete ``H[ρ]`` (no time-step error), reached when the residual
    ``max_j ‖Hφ_j − ε_jφ_j‖`` falls below ``tol``.

    Parameters
    ----------
    system : schrodinger_1d, gross_pitaevskii_1d (one state) or kohn_sham_1d (its orbitals).
    n_states : number of states (default 1; the number of orbitals for Kohn–Sham).
    dtau : imaginary-time step (> 0).
    x0 : Tensor (n_states, n), optional starting states (default: the lowest eigenstates of
        the external potential for Kohn–Sham, else Gaussians of increasing node count).

    Returns
    -------
    energies : Tensor (n_states,) — eigenvalues of ``H[ρ]`` (orbital energies / chemical
        potential for the nonlinear systems)
    states : Tensor (n_states, n) complex128, ``Σ|φ|²dx = 1``
    """
    dtau = _checks.positive("dtau", dtau)
    tol = _checks.positive("tol", tol)
    max_iter = _checks.positive_int("max_iter", max_iter)
    ham, g = system.hamiltonian, system.grid1d
    orbital = len(system.state_shape) == 2
    k = system.state_shape[0] if orbital else (1 if n_states is None else n_states)
    k = _checks.positive_int("n_states", k)
    if orbital and n_states not in (None, k):
        raise ValueError(f"`n_states` must be {k} (the orbitals) for {system.name}, got {n_states}")
    if type(system).name == "gross_pitaevskii_1d" and k != 1:
        raise ValueError(f"`n_states` must be 1 for gross_pitaevskii_1d, got {k}")
    if x0 is None:
        psi = ham.eigenstates(k)[1] if orbital else _start(g, k)
    else:
        psi = _checks.state("x0", x0, (k, g.n)).to(torch.complex128)
    sigma = float(ham.V.min()) - 1.0
    sigma = -1.0 if abs(sigma) < 1e-3 else sigma
    shift = 1.0 - dtau * sigma / system.hbar  # I + dτ(H − σ)/ħ = shift·(I − a H)
    a = -dtau / system.hbar / shift
    resid = math.inf
    bar = tqdm(total=max_iter, disable=not progress, desc="imaginary time", leave=False)
    for _ in range(max_iter):
        v = _potential(system, psi, orbital)
        op = ham.operator(0.0, scale=1.0, potential=v)
        psi = op.solve_shifted(a, psi)
        psi, eps, resid = _ritz(ham, g, psi, lambda p: _potential(system, p, orbital))
        bar.update()
        bar.set_postfix(residual=f"{resid:.1e}")
        if resid < tol:
            break
    bar.close()
    if not resid < tol:
        raise ConvergenceError(
            f"imaginary-time propagation did not converge in {max_iter} steps (residual "
            f"{resid:.2e} > tol {tol:.0e}); raise `max_iter` or `dtau`",
            residual=resid,
            iterations=max_iter,
        )
    return eps, psi


def _potential(system, psi, orbital):
    x = psi[None] if orbital else psi[:1]
    return system.effective_potential(0.0, system.density(x)).reshape(-1, psi.shape[-1])[0]


def _start(g, k):
    """Gaussians times Hermite-like polynomials (j nodes for state j), centred in the box."""
    c, s = 0.5 * (g.x_min + g.x_max), g.length / 10
    u = (g.x - c) / s
    return torch.stack([(u**j * torch.exp(-(u**2) / 2)) for j in range(k)]).to(torch.complex128)


def _ritz(ham, g, psi, potential):
    """Orthonormalise ``psi`` (k, n) on the grid, then rotate to the Ritz vectors of
    ``H[v]`` with ``v = potential(orthonormal states)``; returns states, values, residual."""
    S = (psi.conj() @ psi.T) * g.dx  # (k, k) Gram matrix (conjugate-linear in the first slot)
    Li = torch.linalg.inv(torch.linalg.cholesky(S))
    psi = Li.conj() @ psi  # orthonormal: φ_i = Σ_j conj(Li_ij) ψ_j
    Hpsi = ham.apply(psi, 0.0, potential=potential(psi))
    eps, C = torch.linalg.eigh((psi.conj() @ Hpsi.T) * g.dx)
    phi, Hphi = C.T @ psi, C.T @ Hpsi  # φ_i = Σ_j C_ji ψ_j
    resid = float(((Hphi - eps[:, None] * phi).abs() ** 2).sum(-1).mul(g.dx).sqrt().max())
    peak = phi[torch.arange(len(phi)), phi.abs().argmax(-1)]
    return phi * torch.polar(torch.ones_like(peak.real), -torch.angle(peak))[:, None], eps, resid

"""Time-dependent Kohn–Sham for a few electrons in 1-D (soft-Coulomb atoms, closed shell)."""

from __future__ import annotations

import math

import numpy as np
import torch
from tqdm.auto import tqdm

from ...errors import ConvergenceError
from ..base import register
from .base import QuantumSystem
from .lda import exchange_energy_density, exchange_potential


@register("kohn_sham_1d")
class KohnSham1D(QuantumSystem):
    """``iħ ∂φ_j/∂t = (T + v_ext + E(t)·x + v_H[n] + v_x[n]) φ_j`` for doubly occupied orbitals.

    State ``(batch, n_orb, n)`` complex128 with ``n_orb = ⌈n_electrons/2⌉`` and occupations 2
    (the last one 1 for odd ``n_electrons``); density ``n = Σ f_j |φ_j|²``.

    - Hartree: ``v_H(x) = Σ_x' n(x') w(x − x') dx`` with ``w(u) = 1/√(u² + a²)``
      (``a = softening_ee``);
    - exchange: the LDA of the soft-Coulomb gas (:mod:`physres.systems.quantum.lda`, valid for
      ``a = 1``); ``xc="none"`` gives time-dependent Hartree;
    - external potential: by default a soft-Coulomb nucleus of charge ``n_electrons``
      (neutral atom; 2 electrons is the 1-D helium model).

    Parameters as :class:`~physres.systems.quantum.Schrodinger1D` (defaults: 200 points on a
    Dirichlet box [−15, 15], fd5 kinetic), plus ``n_electrons``, ``softening_ee``, ``xc`` and
    ``kick`` (the largest momentum kick of :meth:`sample_initial`).
    """

    t_end = 20.0
    dt_save = 0.1
    nonlinear = True

    def __init__(
        self,
        n: int = 200,
        x_min: float = -15.0,
        x_max: float = 15.0,
        n_electrons: int = 2,
        potential="soft_coulomb",
        potential_params: dict | None = None,
        kinetic: str = "fd5",
        boundary: str | None = None,
        softening_ee: float = 1.0,
        xc: str = "lda_x",
        hbar: float = 1.0,
        mass: float = 1.0,
        field: str = "none",
        field_amplitude: float = 0.0,
        field_omega: float = 1.0,
        field_duration: float = 10.0,
        kick: float = 0.05,
    ):
        from ... import _checks

        n_electrons = _checks.positive_int("n_electrons", n_electrons)
        softening_ee = _checks.positive("softening_ee", softening_ee)
        kick = _checks.positive("kick", kick, allow_zero=True)
        if xc not in ("lda_x", "none"):
            raise ValueError(f"`xc` must be 'lda_x' or 'none', got {xc!r}")
        if xc == "lda_x" and softening_ee != 1.0:
            raise ValueError(
                "`xc='lda_x'` is parametrised for `softening_ee` = 1.0, "
                f"got {softening_ee}; use xc='none' for other interactions"
            )
        if potential == "soft_coulomb" and potential_params is None:
            potential_params = {"charge": float(n_electrons)}
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
            n_electrons=n_electrons,
            softening_ee=softening_ee,
            xc=xc,
            kick=kick,
        )
        self.n_electrons, self.xc, self.kick = n_electrons, xc, kick
        n_orb = math.ceil(n_electrons / 2)
        occ = [2.0] * n_orb
        if n_electrons % 2:
            occ[-1] = 1.0
        self.occupations = torch.tensor(occ, dtype=torch.float64)
        self.state_shape = (n_orb, n)
        x = self.grid1d.x
        self._w = 1.0 / torch.sqrt((x[:, None] - x[None, :]) ** 2 + softening_ee**2)  # (n, n)
        self._ground = None

    # --- the Kohn–Sham potential -------------------------------------------------------------
    def density(self, x):
        """``n(x) = Σ_j f_j |φ_j|²``, shape (batch, n)."""
        return torch.einsum("j,bjn->bn", self.occupations.to(x.device), x.abs() ** 2)

    def hartree_potential(self, rho):
        return (rho @ self._w.to(rho.device)) * self.dx

    def effective_potential(self, t, rho):
        """``v_ext + E(t)x + v_H + v_x``, shape (batch, 1, n)."""
        v = self.hamiltonian.potential_at(t).to(rho.device) + self.hartree_potential(rho)
        if self.xc == "lda_x":
            v = v + exchange_potential(rho)
        return v[:, None, :]

    # --- observables -------------------------------------------------------------------------
    def energy(self, x, t=0.0):
        """Kohn–Sham total energy ``Σ f_j⟨φ_j|T + v_ext + E(t)x|φ_j⟩ + E_H + E_x``, (batch,)."""
        rho = self.density(x)
        one_body = (self.hamiltonian.expectation(x, t) * self.occupations.to(x.device)).sum(-1)
        e = one_body + 0.5 * self.grid1d.integrate(rho * self.hartree_potential(rho))
        if self.xc == "lda_x":
            e = e + self.grid1d.integrate(exchange_energy_density(rho))
        return e

    def dipole(self, x):
        """Electronic dipole moment ``d = −Σ x n(x) dx``, shape (batch,)."""
        return -self.position(x)

    def norm(self, x):
        """Electron count ``Σ f_j‖φ_j‖²`` divided by ``n_electrons`` (1 when normalised)."""
        orb = self.grid1d.integrate(x.abs() ** 2)  # (batch, n_orb)
        return (orb * self.occupations.to(x.device)).sum(-1) / self.n_electrons

    def invariants(self, x):
        """``norm`` (electron count / n_electrons) and ``energy`` (conserved without field)."""
        return {"norm": self.norm(x), "energy": self.energy(x, 0.0)}

    # --- ground state ------------------------------------------------------------------------
    def ground_state(
        self, tol: float = 1e-10, max_iter: int = 500, mixing: float = 0.5, progress: bool = False
    ):
        """Self-consistent ground state by diagonalisation and linear density mixing.

        Iterates ``n → φ_j = lowest eigenstates of H[n] → n_new`` with
        ``n ← (1 − mixing)·n + mixing·n_new`` until ``Σ|n_new − n| dx < tol``.

        Returns
        -------
        orbitals : Tensor (n_orb, n) complex128, each ``Σ|φ|²dx = 1``
        eigenvalues : Tensor (n_orb,)
        info : dict with ``iterations`` and ``density_change`` (the last ``Σ|Δn|dx``)
        """
        if self._ground is not None and self._ground[2]["tol"] <= tol:
            return self._ground
        n_orb = self.state_shape[0]
        occ = self.occupations
        _, phi = self.hamiltonian.eigenstates(n_orb)  # non-interacting start
        rho = (occ[:, None] * phi.abs() ** 2).sum(0)[None]
        change = math.inf
        bar = tqdm(total=max_iter, disable=not progress, desc="Kohn–Sham SCF", leave=False)
        iterations = 0
        for _ in range(max_iter):
            iterations += 1
            v = self.effective_potential(0.0, rho)[0, 0]
            eps, phi = self.hamiltonian.eigenstates(n_orb, potential=v)
            new = (occ[:, None] * phi.abs() ** 2).sum(0)[None]
            change = float(self.grid1d.integrate((new - rho).abs()))
            bar.update()
            bar.set_postfix(change=f"{change:.1e}")
            if change < tol:
                rho = new
                break
            rho = (1 - mixing) * rho + mixing * new
        bar.close()
        if change >= tol:
            raise ConvergenceError(
                f"Kohn–Sham SCF did not converge in {max_iter} iterations (density change "
                f"{change:.2e} > tol {tol:.0e}); raise `max_iter` or lower `mixing`",
                residual=change,
                iterations=max_iter,
            )
        self._ground = (phi, eps, {"iterations": iterations, "density_change": change, "tol": tol})
        return self._ground

    def sample_initial(self, n: int, seed: int = 0) -> torch.Tensor:
        """The ground state kicked by ``exp(i κ x)`` with ``κ ~ U(−kick, kick)`` (a dipole
        kick, i.e. a field ``E(t) = −κ δ(t)``). Shape (n, n_orb, n_grid)."""
        from ... import _checks

        n = _checks.positive_int("n", n)
        phi = self.ground_state()[0]
        kappa = np.random.default_rng(seed).uniform(-self.kick, self.kick, n)
        return self.kicked(phi, kappa)

    def kicked(self, orbitals, kappa) -> torch.Tensor:
        """``exp(i κ x)·φ_j`` for each κ in ``kappa`` (array (batch,)); (batch, n_orb, n)."""
        k = torch.as_tensor(np.asarray(kappa, dtype=np.float64)).reshape(-1, 1, 1)
        return orbitals[None] * torch.polar(torch.ones_like(k * self.grid1d.x), k * self.grid1d.x)

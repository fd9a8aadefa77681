"""Gross–Pitaevskii solitons and time-dependent Kohn–Sham."""

import math

import numpy as np
import pytest
import torch

import physres
from physres.systems.quantum import (
    exchange_energy_density,
    exchange_potential,
    ground_state_imaginary_time,
)
from physres.systems.quantum.lda import exchange_energy_density_exact


@pytest.fixture(scope="module")
def ks():
    return physres.systems.get("kohn_sham_1d", n=96, x_min=-12.0, x_max=12.0)


@pytest.mark.parametrize(
    "name,dt", [("split_operator", 0.005), ("etrs", 0.01), ("crank_nicolson_pc", 0.0025)]
)
def test_bright_soliton_keeps_shape_and_speed(name, dt):
    gp = physres.systems.get("gross_pitaevskii_1d", n=256, g=-1.0)
    x0, v, a, t = -3.0, 0.8, 1.0, 2.0
    psi = gp.bright_soliton(0.0, [x0], [v], [a])
    n = round(t / dt)
    out = physres.rollout(physres.steppers.get(name, gp.rhs), psi, dt, n)[:, -1]
    exact = gp.bright_soliton(t, [x0], [v], [a])
    assert float((out.abs() - exact.abs()).abs().max()) < 1e-4  # shape
    centre = float(gp.position(out) / gp.norm(out))
    assert abs(centre - (x0 + v * t)) < 1e-5  # speed
    assert float((out - exact).abs().max()) < 1e-4  # and phase
    inv0, inv1 = gp.invariants(psi), gp.invariants(out)
    assert torch.allclose(inv1["norm"], inv0["norm"], rtol=1e-12)
    assert torch.allclose(inv1["energy"], inv0["energy"], rtol=1e-6)


def test_soliton_is_a_stationary_solution_of_the_discrete_rhs():
    gp = physres.systems.get("gross_pitaevskii_1d", n=256, g=-2.0, hbar=1.0, mass=1.0)
    psi = gp.bright_soliton(0.0, [0.0], [0.0], [0.9])
    mu = -(0.9**2) * 2.0 / 2  # μ = −ħ²κ²/2m, κ = a√(m|g|)/ħ
    assert torch.allclose(gp.rhs(0.0, psi), -1j * mu * psi, atol=1e-9)  # box-edge tails
    assert np.isclose(float(gp.norm(psi)), 2 * 0.9 / math.sqrt(2.0), rtol=1e-10)


def test_implicit_midpoint_keeps_the_norm_of_a_nonlinear_field():
    """Newton–Krylov on the real form of a non-holomorphic field: quadratic invariant kept."""
    gp = physres.systems.get("gross_pitaevskii_1d", n=64, x_min=-10.0, x_max=10.0, g=-1.0)
    psi = gp.sample_initial(2, seed=2)
    out = physres.rollout(physres.steppers.get("implicit_midpoint", gp.rhs), psi, 0.02, 3)
    assert torch.allclose(gp.norm(out[:, -1]), gp.norm(psi), rtol=1e-11)


def test_lda_exchange_table_against_the_closed_form():
    n = np.array([1e-3, 0.05, 0.3, 1.0, 4.0])
    e = exchange_energy_density(torch.from_numpy(n)).numpy()
    assert np.allclose(e, exchange_energy_density_exact(n), atol=5e-7)
    h = 1e-6  # v_x is the derivative of e_x
    rho = torch.tensor([0.05, 0.3, 1.0])
    fd = (exchange_energy_density(rho + h) - exchange_energy_density(rho - h)) / (2 * h)
    assert torch.allclose(exchange_potential(rho), fd, atol=1e-7)
    assert float(exchange_potential(torch.tensor([50.0]))) == pytest.approx(-0.5, abs=1e-3)


def test_kohn_sham_potential_is_the_derivative_of_the_energy(ks):
    """dE/dε along φ + εη equals Σ_j f_j·2Re⟨η_j|H[n]φ_j⟩dx, so the propagated energy is
    conserved by exact dynamics (Hartree and LDA exchange consistent with their potentials)."""
    phi = ks.sample_initial(1, seed=3)
    eta = torch.randn_like(phi) * torch.exp(-(ks.grid1d.x**2) / 8)
    eps = 1e-5
    fd = (ks.energy(phi + eps * eta) - ks.energy(phi - eps * eta)) / (2 * eps)
    v = ks.effective_potential(0.0, ks.density(phi))
    Hphi = ks.hamiltonian.apply(phi, potential=v)
    an = 2 * ((eta.conj() * Hphi).real.sum(-1) * ks.dx * ks.occupations).sum(-1)
    assert torch.allclose(fd, an, rtol=1e-8)


def test_kohn_sham_ground_state_is_self_consistent(ks):
    phi, eps, info = ks.ground_state(tol=1e-10)
    assert info["density_change"] < 1e-10
    v = ks.effective_potential(0.0, ks.density(phi[None]))[0]
    residual = ks.hamiltonian.apply(phi, potential=v) - eps[:, None] * phi
    assert float(residual.abs().max()) < 1e-7
    assert float(ks.norm(phi[None])) == pytest.approx(1.0, abs=1e-12)
    # independent route: imaginary-time propagation reaches the same state
    eps_it, phi_it = ground_state_imaginary_time(ks, tol=1e-10)
    assert torch.allclose(eps_it, eps, atol=1e-9)
    assert torch.allclose(phi_it.abs(), phi.abs(), atol=1e-7)
    # the two-electron soft-Coulomb atom is bound
    assert -3.0 < float(ks.energy(phi[None])) < -2.0


@pytest.mark.parametrize("name", ["etrs", "crank_nicolson_pc"])
def test_kohn_sham_propagation_conserves_energy_without_a_field(ks, name):
    x = ks.sample_initial(2, seed=1)
    E0 = ks.energy(x)
    errs = []
    for dt in (0.05, 0.025):
        out = physres.rollout(physres.steppers.get(name, ks.rhs), x, dt, round(1.0 / dt))
        errs.append(float((ks.energy(out[:, -1]) - E0).abs().max()))
        assert torch.allclose(ks.norm(out[:, -1]), ks.norm(x), rtol=1e-12)
    assert errs[1] < 1e-6
    assert errs[0] / errs[1] > 3.0  # the energy error is the O(dt²) step error


def test_kohn_sham_propagators_against_the_dop853_reference(ks):
    x = ks.sample_initial(1, seed=4)
    ref = physres.reference.solve(ks, x, np.array([0.0, 0.5]), rtol=1e-11, atol=1e-12)[:, -1]
    for name in ("etrs", "exponential_midpoint", "split_operator", "crank_nicolson_pc"):
        errs = [
            float(
                np.abs(
                    physres.rollout(physres.steppers.get(name, ks.rhs), x, 0.5 / n, n)[
                        :, -1
                    ].numpy()
                    - ref
                ).max()
            )
            for n in (10, 20)
        ]
        assert 1.8 < math.log2(errs[0] / errs[1]) < 2.3, (name, errs)


def test_crank_nicolson_pc_is_crank_nicolson_on_a_linear_hamiltonian():
    """Time-independent linear H: the same Cayley step as the generic implicit stepper."""
    for kw in (
        {"kinetic": "fd3"},
        {"kinetic": "fd5", "boundary": "periodic"},
        {"kinetic": "spectral"},
    ):
        qs = physres.systems.get("schrodinger_1d", n=64, x_min=-8.0, x_max=8.0, **kw)
        x = qs.sample_initial(3, seed=2)
        a = physres.steppers.get("crank_nicolson_pc", qs.rhs)(x, 0.0, 0.05)
        b = physres.steppers.get("crank_nicolson", qs.rhs)(x, 0.0, 0.05)
        assert torch.allclose(a, b, atol=1e-11), kw


def test_kohn_sham_ground_state_is_stationary(ks):
    phi = ks.ground_state()[0][None]
    out = physres.rollout(physres.steppers.get("etrs", ks.rhs), phi, 0.1, 10)[:, -1]
    assert float((ks.density(out) - ks.density(phi)).abs().max()) < 1e-7


def test_kohn_sham_bad_parameters():
    with pytest.raises(ValueError, match="`xc`"):
        physres.systems.get("kohn_sham_1d", xc="pbe")
    with pytest.raises(ValueError, match="`softening_ee`"):
        physres.systems.get("kohn_sham_1d", softening_ee=0.5)
    with pytest.raises(TypeError, match="`n_electrons`"):
        physres.systems.get("kohn_sham_1d", n_electrons=2.0)
    with pytest.raises(ValueError, match="`g`"):
        physres.systems.get("gross_pitaevskii_1d", g=float("nan"))

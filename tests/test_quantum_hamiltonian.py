"""Grids, Hamiltonians, operators and eigenstates of the quantum systems."""

import numpy as np
import pytest
import torch

import physres
from physres.steppers import BandedOperator
from physres.steppers.banded import solve_banded
from physres.systems.quantum import Grid1D, SpectralOperator, ground_state_imaginary_time


def ho(**kw):
    return physres.systems.get("schrodinger_1d", **{"n": 128, "x_min": -10.0, "x_max": 10.0, **kw})


@pytest.mark.parametrize("boundary", ["periodic", "dirichlet"])
def test_grid_transform_round_trip_and_spacing(boundary):
    g = Grid1D(30, -1.0, 2.0, boundary)
    assert np.allclose(np.diff(g.x_np), g.dx)
    if boundary == "periodic":
        assert g.x_np[0] == -1.0 and np.isclose(g.x_np[-1] + g.dx, 2.0)
    else:
        assert np.isclose(g.x_np[0] - g.dx, -1.0) and np.isclose(g.x_np[-1] + g.dx, 2.0)
    psi = torch.randn(3, 30, dtype=torch.complex128)
    assert torch.allclose(g.inverse(g.forward(psi)), psi, atol=1e-14)


def test_dst_matches_the_sine_sum():
    g = Grid1D(12, 0.0, 1.0, "dirichlet")
    psi = torch.randn(12, dtype=torch.complex128)
    j = np.arange(12)
    S = np.sin(np.pi * np.outer(j + 1, j + 1) / 13)
    assert np.allclose(g.forward(psi).numpy(), S @ psi.numpy(), atol=1e-13)


@pytest.mark.parametrize("kinetic", ["fd3", "fd5", "spectral"])
@pytest.mark.parametrize("boundary", ["periodic", "dirichlet"])
def test_kinetic_symbol_is_the_spectrum_of_the_matrix(kinetic, boundary):
    """The split-operator step uses ``kinetic_symbol``; it must be the exact spectrum of T."""
    qs = ho(n=40, kinetic=kinetic, boundary=boundary, potential="free")
    ham = qs.hamiltonian
    T = (
        ham.operator(0.0, scale=1.0).dense().real.numpy()
        if kinetic != "spectral"
        else SpectralOperator(qs.grid1d, ham.kinetic_symbol, torch.zeros(40)).dense().real.numpy()
    )
    assert np.allclose(T, T.T, atol=1e-12)
    assert np.allclose(
        np.sort(np.linalg.eigvalsh(T)),
        np.sort(ham.kinetic_symbol.numpy()),
        atol=1e-9 * np.abs(T).max(),
    )


@pytest.mark.parametrize("p,periodic", [(1, False), (1, True), (2, False), (2, True)])
def test_banded_operator_against_dense(p, periodic):
    rng = np.random.default_rng(1)
    bands = rng.standard_normal((p + 1, 24))
    if not periodic:
        for k in range(1, p + 1):
            bands[k, 24 - k :] = 0
    op = BandedOperator(bands, -1j / 0.7, periodic=periodic)
    A = op.dense()
    x = torch.randn(5, 24, dtype=torch.complex128)
    assert torch.allclose(op.matvec(x), x @ A.T, atol=1e-13)
    for a in (0.05, 0.3 - 0.2j):
        z = op.solve_shifted(a, x)
        M = torch.eye(24, dtype=torch.complex128) - a * A
        assert torch.allclose(z @ M.T, x, atol=1e-12)
    E = torch.linalg.matrix_exp(0.4 * A)
    assert torch.allclose(op.expm_apply(0.4, x), x @ E.T, atol=1e-12)


def test_banded_solve_is_differentiable():
    bands = np.array([[2.0] * 10, [-1.0] * 9 + [0.0]])
    op = BandedOperator(bands, -1j)
    b = torch.randn(2, 10, dtype=torch.complex128, requires_grad=True)
    assert torch.autograd.gradcheck(lambda b: op.solve_shifted(0.3, b), (b,))


@pytest.mark.parametrize("periodic", [False, True])
def test_band_matrix_solve_against_dense_and_its_gradients(periodic):
    """``solve_banded`` is differentiable in the bands too (learned Hamiltonians)."""
    rng = np.random.default_rng(2)
    n, p, c = 11, 2, 0.1 + 0.3j
    bands = torch.from_numpy(rng.standard_normal((p + 1, n)))
    if not periodic:
        for k in range(1, p + 1):
            bands[k, n - k :] = 0
    b = torch.randn(3, n, dtype=torch.complex128)
    A = (
        torch.eye(n, dtype=torch.complex128)
        - c * BandedOperator(bands.numpy(), 1.0, periodic=periodic).dense()
    )
    z = solve_banded(bands, c, b, periodic=periodic)
    assert torch.allclose(z, torch.linalg.solve(A, b.T).T, atol=1e-13)
    bands.requires_grad_()
    b.requires_grad_()
    assert torch.autograd.gradcheck(
        lambda m, v: solve_banded(m, c, v, periodic=periodic), (bands, b)
    )


def test_band_matrix_solve_names_bad_arguments():
    with pytest.raises(ValueError, match="`bands` must be a real"):
        solve_banded(torch.ones(2, 8, dtype=torch.complex128), 0.1, torch.ones(1, 8))
    with pytest.raises(ValueError, match="`b` has last dimension 7"):
        solve_banded(torch.ones(2, 8, dtype=torch.float64), 0.1, torch.ones(1, 7))


def test_spectral_shifted_solve_with_a_potential():
    qs = ho(n=64, kinetic="spectral")
    op = qs.linear_operator(0.0)
    x = qs.sample_initial(3)
    z = op.solve_shifted(0.05, x)
    assert torch.allclose(z - 0.05 * op.matvec(z), x, atol=1e-11)


@pytest.mark.parametrize("kinetic", ["fd3", "fd5", "spectral"])
def test_hamiltonian_is_hermitian(kinetic):
    qs = ho(kinetic=kinetic, potential="double_well", field="cw", field_amplitude=0.1)
    assert qs.hamiltonian.check_hermitian(t=0.7) < 1e-13
    H = qs.linear_operator(0.7).dense() * 1j  # A = -iH (ħ = 1)
    assert torch.allclose(H, H.conj().T, atol=1e-12)


def test_harmonic_eigenvalues_fd3_have_the_known_h2_error():
    """fd3 turns T into T − (ħ²h²/24m)∂⁴, so to first order E_n = (n + ½) − (h²/32)(2n² + 2n + 1)
    for ħ = m = ω = 1 (⟨p⁴⟩ = ¾(2n² + 2n + 1)); the remainder is O(h⁴)."""
    for n_grid in (200, 400):
        qs = ho(n=n_grid, x_min=-12.0, x_max=12.0)
        E = qs.eigenstates(4)[0].numpy()
        n = np.arange(4)
        first_order = -(qs.dx**2 / 32) * (2 * n**2 + 2 * n + 1)
        assert np.all(np.abs(E - (n + 0.5) - first_order) < 0.2 * qs.dx**4 * (1 + n**3))
        assert np.all(np.abs((E - n - 0.5) / first_order - 1) < 0.02)


def test_harmonic_eigenvalues_fd5_fourth_order_and_spectral_exact():
    errs = []
    for n_grid in (100, 200):
        E = ho(n=n_grid, x_min=-12.0, x_max=12.0, kinetic="fd5").eigenstates(3)[0].numpy()
        errs.append(np.abs(E - np.arange(3) - 0.5))
    assert np.all(np.log2(errs[0] / errs[1]) > 3.8)  # O(h⁴)
    E = ho(n=128, x_min=-12.0, x_max=12.0, kinetic="spectral").eigenstates(5)[0].numpy()
    assert np.allclose(E, np.arange(5) + 0.5, atol=1e-10)


def test_eigenstates_normalised_orthogonal_and_eigen():
    qs = ho(n=96, kinetic="fd5", potential="soft_coulomb")
    E, S = qs.eigenstates(3)
    gram = (S.conj() @ S.T).real * qs.dx
    assert torch.allclose(gram, torch.eye(3, dtype=torch.float64), atol=1e-10)
    HS = qs.hamiltonian.apply(S)
    assert torch.allclose(HS, E[:, None] * S, atol=1e-9)
    assert E[0] < 0  # a bound state of the soft-Coulomb well


def test_hbar_and_mass_scale_the_spectrum():
    qs = ho(
        n=128,
        x_min=-6.0,
        x_max=6.0,
        kinetic="spectral",
        hbar=0.5,
        mass=2.0,
        potential_params={"omega": 1.5},
    )
    E = qs.eigenstates(3)[0].numpy()
    assert np.allclose(E, 0.5 * 1.5 * (np.arange(3) + 0.5), atol=1e-9)


def test_callable_potential_and_parameters():
    qs = ho(potential=lambda x: 0.5 * x**2)
    ref = ho(potential="harmonic")
    assert torch.allclose(qs.eigenstates(2)[0], ref.eigenstates(2)[0])
    assert qs.params["potential"].startswith("callable:")


@pytest.mark.parametrize("system", ["schrodinger_1d", "gross_pitaevskii_1d"])
def test_imaginary_time_matches_the_sparse_eigensolver(system):
    qs = physres.systems.get(
        system,
        n=96,
        x_min=-10.0,
        x_max=10.0,
        potential="harmonic",
        kinetic="fd5",
        **({"g": 0.0} if system != "schrodinger_1d" else {}),
    )
    k = 3 if system == "schrodinger_1d" else 1
    E, S = ground_state_imaginary_time(qs, n_states=k, tol=1e-10)
    E_ref, S_ref = qs.hamiltonian.eigenstates(k)
    assert torch.allclose(E, E_ref, atol=1e-10)
    assert torch.allclose(S.abs(), S_ref.abs(), atol=1e-8)


def test_imaginary_time_gross_pitaevskii_is_self_consistent():
    gp = physres.systems.get(
        "gross_pitaevskii_1d",
        n=128,
        x_min=-10.0,
        x_max=10.0,
        potential="harmonic",
        kinetic="fd5",
        g=5.0,
    )
    mu, psi = ground_state_imaginary_time(gp, tol=1e-10)
    v = gp.effective_potential(0.0, gp.density(psi))
    residual = gp.hamiltonian.apply(psi, potential=v) - mu * psi
    assert float(residual.abs().max()) < 1e-8
    assert mu > 0.5  # repulsion raises the chemical potential above ħω/2


@pytest.mark.parametrize(
    "kw,match",
    [
        ({"kinetic": "fd7"}, "`kinetic`"),
        ({"boundary": "open"}, "`boundary`"),
        ({"potential": "morse"}, "`potential`"),
        ({"potential_params": {"omgea": 2.0}}, "`potential_params`"),
        ({"n": 4}, "`n`"),
        ({"x_min": 1.0, "x_max": -1.0}, "`x_min`"),
        ({"hbar": 0.0}, "`hbar`"),
        ({"field": "laser"}, "`field`"),
        ({"k_max": 100.0}, "`k_max`"),
    ],
)
def test_bad_parameters_are_named(kw, match):
    with pytest.raises(ValueError, match=match):
        ho(**kw)


def test_bad_eigenstate_count():
    with pytest.raises(ValueError, match="`k`"):
        ho(n=16).eigenstates(20)


def test_eigenstates_give_the_full_basis_of_a_small_grid():
    """k = n on a small grid: the whole orthonormal eigenbasis (dense eigh), checked against
    the fd3 particle-in-a-box energies (2/h²)·sin²(jπ/(2(n+1))) of the discrete Laplacian and
    the periodic spectral plane-wave energies k²/2."""
    for kinetic in ("fd3", "spectral"):
        qs = physres.systems.get(
            "schrodinger_1d", n=24, x_min=-3.0, x_max=3.0, potential="free", kinetic=kinetic
        )
        n, dx = qs.grid.size, qs.dx
        energies, states = qs.eigenstates(n)
        assert energies.shape == (n,) and states.shape == (n, n)
        gram = (states.conj() @ states.T).real.numpy() * dx
        np.testing.assert_allclose(gram, np.eye(n), atol=1e-12)
        if kinetic == "fd3":  # Dirichlet box
            j = np.arange(1, n + 1)
            exact = 2 / dx**2 * np.sin(j * np.pi / (2 * (n + 1))) ** 2  # T = −∂²/2 (ħ = m = 1)
        else:  # periodic plane waves k²/2, k = 2π·fftfreq (each ±k pair degenerate)
            exact = np.sort(0.5 * (2 * np.pi * np.fft.fftfreq(n, d=dx)) ** 2)
        np.testing.assert_allclose(energies.numpy(), exact, rtol=1e-10, atol=1e-10)
        with pytest.raises(ValueError, match=r"`k` must be an int in \[1, 24\]"):
            qs.eigenstates(n + 1)

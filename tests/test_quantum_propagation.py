"""Propagating wavefunctions: closed forms, norm laws of each step, and scipy references."""

import math

import numpy as np
import pytest
import torch

import physres
from physres.steppers import stability_function


def qsys(**kw):
    base = {"n": 64, "x_min": -8.0, "x_max": 8.0, "potential": "harmonic"}
    return physres.systems.get("schrodinger_1d", **{**base, **kw})


def eigen(qs):
    """Full eigendecomposition of the discrete H (dense, small grids)."""
    H = (qs.linear_operator(0.0).dense() * 1j * qs.hbar).numpy()
    E, Q = np.linalg.eigh(0.5 * (H + H.conj().T))
    return E, Q


def test_euler_is_exactly_the_residual_step():
    qs = qsys(hbar=0.7, mass=1.3, kinetic="fd5")
    x = qs.sample_initial(3)
    H = qs.linear_operator(0.0).dense() * 1j * 0.7
    dt = 0.013
    expected = x - 1j * dt / 0.7 * (x @ H.T)
    out = physres.steppers.get("euler", qs.rhs)(x, 0.0, dt)
    assert torch.allclose(out, expected, rtol=0, atol=1e-14)


def test_euler_norm_grows_as_the_eigen_decomposition_predicts():
    """‖ψ_n‖² = Σ|c_k|²(1 + Δt²E_k²/ħ²)^n: the residual step is unstable for every Δt."""
    qs = qsys(hbar=0.8)
    E, Q = eigen(qs)
    x = qs.sample_initial(2, seed=3)
    dt, n = 0.01, 60
    c2 = np.abs(x.numpy() @ Q.conj()) ** 2 * qs.dx  # |c_k|² with Σ|c_k|² = ‖ψ‖²
    predicted = (c2 * (1 + dt**2 * E**2 / 0.8**2) ** n).sum(-1)
    traj = physres.rollout(physres.steppers.get("euler", qs.rhs), x, dt, n)
    norm = qs.norm(traj[:, -1]).numpy()
    assert np.allclose(norm, predicted, rtol=1e-10, atol=0)
    assert np.all(norm > 1.0)
    R = stability_function("euler", -1j * dt * E / 0.8)  # measured on y' = λy
    assert np.allclose(np.abs(R) ** 2, 1 + dt**2 * E**2 / 0.8**2, rtol=1e-13)


def test_backward_euler_loses_norm_as_its_stability_function_predicts():
    qs = qsys(kinetic="fd5")
    E, Q = eigen(qs)
    x = qs.sample_initial(2, seed=4)
    dt, n = 0.05, 40
    c2 = np.abs(x.numpy() @ Q.conj()) ** 2 * qs.dx
    R2 = np.abs(stability_function("backward_euler", -1j * dt * E)) ** 2
    assert np.allclose(R2, 1 / (1 + dt**2 * E**2), rtol=1e-13)
    traj = physres.rollout(physres.steppers.get("backward_euler", qs.rhs), x, dt, n)
    assert np.allclose(qs.norm(traj[:, -1]).numpy(), (c2 * R2**n).sum(-1), rtol=1e-10)


@pytest.mark.parametrize(
    "kw",
    [
        {"kinetic": "fd3", "n": 63},
        pytest.param({"kinetic": "fd5", "boundary": "periodic", "n": 48}, marks=pytest.mark.slow),
    ],
)
def test_crank_nicolson_conserves_the_norm_to_1e12_over_1e4_steps(kw):
    qs = qsys(**kw)
    x = qs.sample_initial(2, seed=5)
    x = x / qs.norm(x).sqrt()[:, None]
    traj = physres.rollout(
        physres.steppers.get("crank_nicolson", qs.rhs), x, 0.01, 10_000, save_every=2500
    )
    drift = (qs.norm(traj.reshape(-1, kw["n"])) - 1).abs().max()
    assert float(drift) < 1e-12


@pytest.mark.parametrize(
    "kw",
    [
        {"kinetic": "spectral"},
        pytest.param({"kinetic": "fd3"}, marks=pytest.mark.slow),
        pytest.param({"kinetic": "fd5", "boundary": "periodic"}, marks=pytest.mark.slow),
    ],
)
def test_split_operator_conserves_the_norm_over_1e4_steps(kw):
    """Unitary to round-off: after 10⁴ steps the drift is below 1e-12 plus the drift of 10⁴
    bare transform round trips (torch's FFT has a systematic ~1e-16 bias per round trip)."""
    qs = qsys(n=48, **kw)
    x = qs.sample_initial(2, seed=5)
    x = x / qs.norm(x).sqrt()[:, None]
    traj = physres.rollout(
        physres.steppers.get("split_operator", qs.rhs), x, 0.01, 10_000, save_every=2500
    )
    drift = float((qs.norm(traj.reshape(-1, 48)) - 1).abs().max())
    g, y = qs.grid1d, x.clone()
    for _ in range(10_000):
        y = g.inverse(g.forward(y))
    floor = float((qs.norm(y) - 1).abs().max())
    assert drift < 1e-12 + 1.5 * floor
    assert drift < 5e-12


def test_crank_nicolson_is_the_cayley_step_by_one_band_solve():
    qs = qsys(kinetic="fd5")
    x = qs.sample_initial(2)
    step = physres.steppers.get("crank_nicolson", qs.rhs)
    out = step(x, 0.0, 0.1)
    A = qs.linear_operator(0.0).dense()
    eye = torch.eye(64, dtype=torch.complex128)
    cayley = torch.linalg.solve(eye - 0.05 * A, eye + 0.05 * A)
    assert torch.allclose(out, x @ cayley.T, atol=1e-13)
    assert step.njev == 0  # no Newton iteration


def _free_gaussian_width(sigma0, t, hbar, mass):
    return sigma0 * math.sqrt(1 + (hbar * t / (2 * mass * sigma0**2)) ** 2)


@pytest.mark.parametrize("name", ["exponential", "split_operator"])
def test_free_gaussian_spreads_and_moves_as_the_closed_form(name):
    """Free particle, spectral kinetic: ⟨x⟩ = x0 + ħk0t/m, σ(t) = σ0√(1 + (ħt/2mσ0²)²)."""
    hbar, mass = 0.5, 2.0
    qs = physres.systems.get(
        "schrodinger_1d",
        n=256,
        x_min=-40.0,
        x_max=40.0,
        potential="free",
        kinetic="spectral",
        hbar=hbar,
        mass=mass,
    )
    x0, k0, s0 = -5.0, 3.0, 1.2
    psi = qs.gaussian_packet([x0], [k0], [s0])
    step = physres.steppers.get(name, qs.rhs)
    traj = physres.rollout(step, psi, 0.5, 16, save_every=4)  # split-operator is exact here
    t = np.arange(5) * 2.0
    x = qs.grid1d.x
    rho = traj[0].abs() ** 2
    mean = (rho * x).sum(-1) * qs.dx
    width = (((x - mean[:, None]) ** 2 * rho).sum(-1) * qs.dx).sqrt()
    assert np.allclose(mean.numpy(), x0 + hbar * k0 * t / mass, atol=1e-10)
    assert np.allclose(
        width.numpy(), [_free_gaussian_width(s0, ti, hbar, mass) for ti in t], atol=1e-10
    )


@pytest.mark.parametrize(
    "name,dt,tol",
    [("exponential", 0.25, 1e-10), ("split_operator", 0.005, 2e-5), ("etrs", 0.25, 1e-9)],
)
def test_coherent_state_oscillates_as_x0_cos_t(name, dt, tol):
    qs = physres.systems.get("schrodinger_1d", n=128, x_min=-12.0, x_max=12.0, kinetic="spectral")
    x0 = 2.5
    psi = qs.gaussian_packet([x0], [0.0], [math.sqrt(0.5)])  # displaced ground state
    n = round(2.0 / dt)
    traj = physres.rollout(physres.steppers.get(name, qs.rhs), psi, dt, 4 * n, save_every=n)
    t = np.arange(5) * 2.0
    assert np.allclose(qs.position(traj[0]).numpy(), x0 * np.cos(t), atol=tol)


def _transmission(k, V0, a):
    E = k**2 / 2
    if np.isclose(E, V0):
        return 1 / (1 + V0 * a**2 / 2)
    if E < V0:
        kap = np.sqrt(2 * (V0 - E))
        return 1 / (1 + V0**2 * np.sinh(kap * a) ** 2 / (4 * E * (V0 - E)))
    q = np.sqrt(2 * (E - V0))
    return 1 / (1 + V0**2 * np.sin(q * a) ** 2 / (4 * E * (E - V0)))


@pytest.mark.parametrize(
    "n,dx,tol", [(1200, 0.25, 7e-3), pytest.param(2000, 0.125, 2e-3, marks=pytest.mark.slow)]
)
def test_barrier_transmission_matches_the_momentum_averaged_analytic_value(n, dx, tol):
    """A packet through a rectangular barrier: transmitted probability vs ∫|φ(k)|²T(k)dk.
    The sampled step barrier is the leading error (∝ dx²): 0.7% at dx = 0.25, 0.2% at 0.125."""
    V0, a = 1.0, 1.0
    x_min = -n * dx / 2 + dx / 2  # barrier edges midway between grid points: width exactly a
    qs = physres.systems.get(
        "schrodinger_1d",
        n=n,
        x_min=x_min,
        x_max=x_min + n * dx,
        potential="barrier",
        potential_params={"height": V0, "width": a},
        kinetic="spectral",
    )
    assert np.isclose((qs.hamiltonian.V_np > 0).sum() * qs.dx, a)
    k0, s = 1.4, 4.0
    psi = qs.gaussian_packet([-30.0], [k0], [s])
    dt, t_end = 0.01, 45.0
    traj = physres.rollout(
        physres.steppers.get("split_operator", qs.rhs),
        psi,
        dt,
        round(t_end / dt),
        save_every=round(t_end / dt),
    )
    rho = traj[0, -1].abs() ** 2
    x = qs.grid1d.x
    assert float((rho * (x.abs() < 5)).sum() * qs.dx) < 1e-4  # the packet has left the barrier
    T_num = float((rho * (x > 0)).sum() * qs.dx)
    k = np.linspace(k0 - 2.5 / s, k0 + 2.5 / s, 2001)
    w = np.exp(-2 * s**2 * (k - k0) ** 2)  # |φ(k)|² of a packet with std s
    T_avg = float(np.sum(w * np.array([_transmission(kk, V0, a) for kk in k])) / np.sum(w))
    assert 0.3 < T_avg < 0.9
    assert abs(T_num - T_avg) < tol


@pytest.mark.parametrize("kinetic", ["fd3", "spectral"])
def test_exponential_agrees_with_the_expm_multiply_reference(kinetic):
    qs = qsys(kinetic=kinetic)
    x = qs.sample_initial(3)
    t = np.linspace(0.0, 2.0, 5)
    assert qs.reference_method == "expm"
    ref = physres.reference.solve(qs, x, t)  # expm_multiply on the same discrete H
    traj = physres.rollout(physres.steppers.get("exponential", qs.rhs), x, 0.5, 4)
    assert np.allclose(traj.numpy(), ref, atol=1e-10)


def test_time_dependent_field_second_order_against_dop853():
    """A pulse E(t)·x: every second-order propagator converges at rate 2 to the DOP853
    reference computed on the same discrete H(t) (so only time stepping is measured)."""
    qs = qsys(
        n=48,
        kinetic="fd3",
        boundary="periodic",
        field="pulse",
        field_amplitude=0.5,
        field_omega=2.0,
        field_duration=2.0,
    )
    assert qs.reference_method == "DOP853"
    x = qs.sample_initial(2, seed=1)
    ref = physres.reference.solve(qs, x, np.array([0.0, 1.0]), rtol=1e-12, atol=1e-13)[:, -1]
    for name in ("crank_nicolson", "split_operator", "exponential_midpoint", "etrs"):
        errs = []
        for n in (40, 80):
            out = physres.rollout(physres.steppers.get(name, qs.rhs), x, 1.0 / n, n)[:, -1]
            errs.append(float(np.abs(out.numpy() - ref).max()))
        order = math.log2(errs[0] / errs[1])
        assert 1.85 < order < 2.2, (name, errs)


def test_exponential_refuses_a_time_dependent_hamiltonian():
    qs = qsys(field="cw", field_amplitude=0.1)
    with pytest.raises(ValueError, match="time-independent"):
        physres.steppers.get("exponential", qs.rhs)(qs.sample_initial(1), 0.0, 0.1)


@pytest.mark.parametrize("name", ["split_operator", "etrs", "exponential_midpoint"])
def test_quantum_steppers_need_a_quantum_field(name):
    assert name not in physres.steppers.names(general=True)
    with pytest.raises(TypeError, match=name):
        physres.steppers.get(name, lambda t, x: -x)(torch.ones(1, 4), 0.0, 0.1)


def test_krylov_options_are_checked():
    qs = qsys()
    with pytest.raises(ValueError, match="`krylov_tol`"):
        physres.steppers.get("etrs", qs.rhs, krylov_tol=-1.0)


def test_generate_stores_the_grid(tmp_path):
    qs = qsys(n=32)
    path = physres.data.generate(
        qs, tmp_path / "q.h5", n_traj=2, t_end=0.2, dt_save=0.1, progress=False
    )
    with physres.data.open(path) as f:
        assert f.dtype == torch.complex128
        assert np.allclose(f.grid["x"], qs.grid)
        rebuilt = f.make_system()
        assert np.allclose(
            f.states[0, -1],
            physres.rollout(
                physres.steppers.get("exponential", rebuilt.rhs),
                torch.from_numpy(f.states[0, :1]),
                0.1,
                2,
            )[0, -1].numpy(),
            atol=1e-10,
        )


@pytest.mark.parametrize("n", [10, 100, 2047, 2048])
def test_sine_transform_equals_the_sine_basis_at_awkward_n(n):
    # n + 1 = 11, 2048: one FFT of the odd extension; n + 1 = 101, 2049 = 3·683: Bluestein
    from physres.systems.quantum.grid import Grid1D, _dst1

    j = np.arange(1, n + 1)
    S = np.sin(np.pi * ((np.outer(j, j)) % (2 * (n + 1))) / (n + 1))  # S_kj = sin(πkj/(n+1))
    gen = torch.Generator().manual_seed(n)
    x = torch.randn(3, n, dtype=torch.complex128, generator=gen)
    expected = torch.from_numpy(x.numpy() @ S.T)
    scale = float(x.abs().max()) * n
    assert float((_dst1(x) - expected).abs().max()) <= 1e-14 * scale
    real = _dst1(x.real)
    expected_real = torch.from_numpy(x.real.numpy() @ S.T)
    assert float((real - expected_real).abs().max()) <= 1e-14 * scale  # real in: real out
    grid = Grid1D(n, 0.0, 1.0, boundary="dirichlet")
    assert float((grid.inverse(grid.forward(x)) - x).abs().max()) <= 1e-13


def test_sine_transform_is_differentiable_on_the_bluestein_path():
    from physres.systems.quantum.grid import _dst1

    x = torch.randn(2, 100, dtype=torch.complex128, requires_grad=True)  # n + 1 = 101
    assert torch.autograd.gradcheck(_dst1, (x,))


@pytest.mark.parametrize(
    "kinetic,n,dt,short",
    [
        ("fd3", 100, 1e-3, True),
        ("fd5", 256, 1e-3, True),
        ("fd3", 60, 0.05, True),
        ("fd3", 60, 5.0, False),
        ("fd3", 60, 50.0, False),
        ("spectral", 60, 1e-3, False),
    ],
)
def test_kinetic_propagator_is_the_exact_exponential_of_t(kinetic, n, dt, short):
    # the method-of-images convolution (short kernels) and the sine-transform pair (the rest)
    # against scipy's dense expm of the same discrete T; pre/post factors applied pointwise
    import scipy.linalg as sla

    qs = qsys(n=n, x_min=-20.0, x_max=20.0, kinetic=kinetic)
    ham, g = qs.hamiltonian, qs.hamiltonian.grid
    T = ham.apply_kinetic(torch.eye(n, dtype=torch.complex128)).numpy().T  # column j = T e_j
    U = sla.expm(-1j * dt * T)
    phase = torch.exp(-1j * dt * ham.kinetic_symbol)
    gen = torch.Generator().manual_seed(n)
    pre, post = (
        torch.exp(1j * torch.rand(n, generator=gen, dtype=torch.float64)) for _ in range(2)
    )
    prop = g.diagonal_propagator(phase, pre=pre, post=post)
    assert (prop.band is not None) == short  # the images path where the kernel is short
    x = qs.sample_initial(3)
    expected = post.numpy() * ((pre.numpy() * x.numpy()) @ U.T)
    assert float(np.abs(prop(x).numpy() - expected).max()) <= 1e-13 * float(x.abs().max())


def test_kinetic_propagator_images_path_is_differentiable():
    qs = qsys(n=40, x_min=-20.0, x_max=20.0)
    g = qs.hamiltonian.grid
    prop = g.diagonal_propagator(torch.exp(-1e-3j * qs.hamiltonian.kinetic_symbol))
    assert prop.band is not None
    x = torch.randn(2, 40, dtype=torch.complex128, requires_grad=True)
    assert torch.autograd.gradcheck(prop, (x,))


def test_split_operator_is_unchanged_where_n_plus_1_has_a_large_prime():
    # n = 2048 (n + 1 = 3·683): the convolution path equals the sine-transform pair step
    qs = qsys(n=2048, x_min=-20.0, x_max=20.0)
    x = qs.sample_initial(2)
    ham, g, dt = qs.hamiltonian, qs.hamiltonian.grid, 1e-3
    half = torch.exp(-0.5j * dt * ham.potential_at(0.0))
    expected = x
    for _ in range(3):
        expected = half * g.inverse(
            torch.exp(-1j * dt * ham.kinetic_symbol) * g.forward(half * expected)
        )
    # the first step of a Δt takes the transform pair, the next ones the image convolution
    stepper = physres.steppers.get("split_operator", qs.rhs)
    steps = physres.rollout(stepper, x, dt, 3)[:, -1]
    assert stepper._static.band is not None
    assert float((steps - expected).abs().max()) <= 1e-13 * float(x.abs().max())


def test_kinetic_propagator_falls_back_when_the_truncated_kernel_misses(monkeypatch):
    from physres.systems.quantum import grid as grid_module

    qs = qsys(n=256, x_min=-20.0, x_max=20.0)
    g, phase = qs.hamiltonian.grid, torch.exp(-1e-2j * qs.hamiltonian.kinetic_symbol)
    assert g.diagonal_propagator(phase).band is not None
    monkeypatch.setattr(grid_module, "IMAGE_TOL", 1e-4)  # drops real kernel entries
    prop = g.diagonal_propagator(phase)
    assert prop.band is None
    x = qs.sample_initial(2)
    assert torch.allclose(prop(x), g.inverse(phase * g.forward(x)), rtol=0, atol=1e-15)

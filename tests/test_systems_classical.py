"""Classical and stiff systems: fields, Jacobians, sampling, invariants, published values."""

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

import physres
from physres.reference import solve

NAMES = [
    "harmonic_oscillator",
    "pendulum",
    "van_der_pol",
    "lorenz63",
    "lotka_volterra",
    "robertson",
    "hires",
]


def _states(system, n=5, seed=3):
    """Sampled initial states plus a perturbation, so fields are checked off the sample set."""
    x = system.sample_initial(n, seed=seed)
    return x * (1 + 0.1 * torch.rand(x.shape, generator=torch.Generator().manual_seed(seed)))


@pytest.mark.parametrize("name", NAMES)
def test_rhs_matches_numpy_adapter(name):
    system = physres.systems.get(name)
    x = _states(system)
    fx = system.rhs(0.3, x)
    assert fx.shape == x.shape and fx.dtype == torch.float64
    for i in range(x.shape[0]):
        np.testing.assert_allclose(
            system.numpy_rhs(0.3, x[i].numpy()),
            fx[i].numpy(),
            rtol=1e-14,
            atol=1e-14 * float(fx.abs().max()),
        )


@pytest.mark.parametrize("name", NAMES)
def test_jacobian_matches_autograd(name):
    system = physres.systems.get(name)
    x = _states(system)
    J = system.jacobian(0.3, x)
    assert J.shape == (x.shape[0], system.n_state, system.n_state)
    for i in range(x.shape[0]):
        auto = torch.autograd.functional.jacobian(lambda y: system.rhs(0.3, y[None])[0], x[i])
        torch.testing.assert_close(J[i], auto, rtol=1e-13, atol=1e-12)
        np.testing.assert_allclose(
            system.numpy_jacobian(0.3, x[i].numpy()), auto.numpy(), rtol=1e-13, atol=1e-12
        )


@pytest.mark.parametrize("name", NAMES)
def test_sample_initial_is_seeded(name):
    system = physres.systems.get(name)
    a, b = system.sample_initial(6, seed=1), system.sample_initial(6, seed=1)
    assert a.shape == (6, *system.state_shape) and a.dtype == torch.float64
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(a, system.sample_initial(6, seed=2))
    with pytest.raises(ValueError, match="`n`"):
        system.sample_initial(0)
    with pytest.raises(TypeError, match="`seed`"):
        system.sample_initial(2, seed=0.5)


@pytest.mark.parametrize(
    "name", ["harmonic_oscillator", "pendulum", "lotka_volterra", "robertson", "hires"]
)
def test_invariants_conserved_along_reference(name):
    system = physres.systems.get(name)
    x0 = system.sample_initial(2, seed=4)
    t = np.linspace(0.0, min(system.t_end, 20.0), 41)
    y = torch.from_numpy(solve(system, x0, t))
    for key, value in system.invariants(y.reshape(-1, *system.state_shape)).items():
        value = value.reshape(2, -1)
        drift = (value - value[:, :1]).abs().max() / value[:, 0].abs().max()
        assert drift < 1e-8, (key, float(drift))


def test_oscillator_sampling_distribution():
    ho = physres.systems.get("harmonic_oscillator", omega=2.0)
    x = ho.sample_initial(4000, seed=0)
    amp = torch.sqrt(x[:, 0] ** 2 + (x[:, 1] / 2.0) ** 2)
    assert 0.2 <= amp.min() and amp.max() <= 1.5
    assert abs(amp.mean().item() - 0.85) < 0.02  # uniform on [0.2, 1.5]
    phase = torch.atan2(-x[:, 1] / 2.0, x[:, 0])
    counts = torch.histc(phase, bins=8, min=-np.pi, max=np.pi)
    assert counts.min() > 0.8 * 500 and counts.max() < 1.2 * 500  # uniform phase

    pendulum = physres.systems.get("pendulum", omega=1.5)
    x = pendulum.sample_initial(2000, seed=0)
    energy = pendulum.invariants(x)["energy"]
    theta_max = torch.arccos(-energy / 1.5**2)  # the largest angle on each orbit
    assert 0.2 - 1e-12 <= theta_max.min() and theta_max.max() <= 1.5 + 1e-12
    assert abs(theta_max.mean().item() - 0.85) < 0.03


def test_harmonic_oscillator_structure_and_solution():
    ho = physres.systems.get("harmonic_oscillator", omega=1.7)
    x0 = ho.sample_initial(3)
    t = torch.linspace(0.0, 5.0, 11)
    exact = ho.solution(x0, t)
    A = ho.linear_operator(0.0).dense()
    for k, tk in enumerate(t):
        torch.testing.assert_close(exact[:, k], x0 @ torch.linalg.matrix_exp(tk * A).T)
    # Crank–Nicolson through the declared operator is the Cayley map: energy to round-off
    step = physres.steppers.get("crank_nicolson", ho.rhs)
    x = x0
    for _ in range(200):
        x = step(x, 0.0, 0.3)
    e0, e1 = ho.invariants(x0)["energy"], ho.invariants(x)["energy"]
    torch.testing.assert_close(e1, e0, rtol=1e-13, atol=0)


def test_pendulum_elliptic_solution_matches_scipy():
    pendulum = physres.systems.get("pendulum", omega=1.3)
    x0 = pendulum.sample_initial(3, seed=7)
    t = np.linspace(0.0, 15.0, 31)
    exact = pendulum.solution(x0, t).numpy()
    for i in range(3):
        sol = solve_ivp(
            pendulum.numpy_rhs,
            (0, 15),
            x0[i].numpy(),
            t_eval=t,
            method="DOP853",
            rtol=1e-12,
            atol=1e-13,
        )
        np.testing.assert_allclose(exact[i], sol.y.T, atol=1e-9)


def test_van_der_pol_limit_cycle():
    """mu = 1: amplitude 2.00862 and period 6.66329 (e.g. Strogatz, Nonlinear Dynamics, §7.5)."""
    vdp = physres.systems.get("van_der_pol", mu=1.0)
    sol = solve_ivp(
        vdp.numpy_rhs,
        (0, 60),
        [0.5, 0.0],
        method="DOP853",
        rtol=1e-11,
        atol=1e-12,
        dense_output=True,
    )
    t = np.linspace(30, 60, 300001)
    q = sol.sol(t)[0]
    assert abs(q.max() - 2.00862) < 2e-5
    up = t[1:][(q[:-1] < 0) & (q[1:] >= 0)]
    assert abs(np.diff(up).mean() - 6.66329) < 1e-4


def test_lorenz_fixed_points():
    lorenz = physres.systems.get("lorenz63", sigma=10.0, rho=28.0, beta=8 / 3)
    c = np.sqrt(8 / 3 * 27)
    x = torch.tensor([[0.0, 0.0, 0.0], [c, c, 27.0], [-c, -c, 27.0]])
    torch.testing.assert_close(lorenz.rhs(0.0, x), torch.zeros_like(x), atol=1e-13, rtol=0)
    # the origin is a saddle: eigenvalues of the Jacobian are known in closed form
    eig = torch.linalg.eigvals(lorenz.jacobian(0.0, x[:1])[0]).real.sort().values
    s = np.sqrt(81 + 4 * 10 * 28)
    np.testing.assert_allclose(eig.numpy(), sorted([(-11 - s) / 2, -8 / 3, (-11 + s) / 2]))


def test_robertson_published_values():
    """Hairer & Wanner (1996) IV.10: y(40) = (0.7158271, 9.185535e-6, 0.2841637)."""
    rob = physres.systems.get("robertson")
    y = solve(rob, np.array([[1.0, 0.0, 0.0]]), np.array([0.0, 40.0]))[0, -1]
    np.testing.assert_allclose(y, [0.7158271, 9.185535e-6, 0.2841637], rtol=2e-7)


def test_hires_published_values():
    """Mazzia & Magherini, Test Set for IVP Solvers (2008): HIRES at t = 321.8122."""
    hires = physres.systems.get("hires")
    x0 = np.array([[1.0, 0, 0, 0, 0, 0, 0, 0.0057]])
    y = solve(hires, x0, np.array([0.0, 321.8122]))[0, -1]
    ref = [
        0.7371312573325668e-3,
        0.1442485726316185e-3,
        0.5888729740967575e-4,
        0.1175651343283149e-2,
        0.2386356198831331e-2,
        0.6238968252742796e-2,
        0.2849998395185769e-2,
        0.2850001604814231e-2,
    ]
    np.testing.assert_allclose(y, ref, rtol=1e-7)


@pytest.mark.parametrize(
    "name, params, match, error",
    [
        ("harmonic_oscillator", {"omega": -1.0}, "`omega`", ValueError),
        ("harmonic_oscillator", {"omega": "fast"}, "`omega`", TypeError),
        ("pendulum", {"omega": 0.0}, "`omega`", ValueError),
        ("van_der_pol", {"mu": -0.1}, "`mu`", ValueError),
        ("lorenz63", {"sigma": float("nan")}, "`sigma`", ValueError),
        ("lotka_volterra", {"delta": 0}, "`delta`", ValueError),
        ("robertson", {"k2": -3e7}, "`k2`", ValueError),
        ("hires", {"k": float("inf")}, "`k`", ValueError),
    ],
)
def test_bad_parameters(name, params, match, error):
    with pytest.raises(error, match=match):
        physres.systems.get(name, **params)


def test_unknown_parameter_and_defaults():
    with pytest.raises(TypeError, match="rho"):
        physres.systems.get("harmonic_oscillator", rho=1.0)
    assert physres.systems.get("van_der_pol", mu=1000.0).reference_method == "Radau"
    for name in ("robertson", "hires"):
        assert physres.systems.get(name).reference_method in ("Radau", "BDF")
    lorenz = physres.systems.get("lorenz63", rho=14.0)
    assert lorenz.params == {"sigma": 10.0, "rho": 14.0, "beta": 8 / 3}

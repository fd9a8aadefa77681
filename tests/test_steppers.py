"""The residual stepper library: orders, tableaus, stability, structure, gradients, errors."""

from fractions import Fraction

import numpy as np
import pytest
import torch
from problems import HarmonicOscillator, LinearProblem, NonlinearField

import physres
from physres import steppers
from physres.steppers import ButcherTableau

GENERAL = steppers.names(general=True)


def _global_error(make_step, x0, exact, t_end, dt):
    n = round(t_end / dt)
    traj = physres.rollout(make_step(), x0, dt=dt, n_steps=n, save_every=n)
    return float((traj[:, -1] - exact).abs().max())


def _slope(dts, errors):
    return np.polyfit(np.log(dts), np.log(errors), 1)[0]


def _shows_order(slope, order):
    """Order ``order``, not ``order ± 1``. Over these step ranges fifth-order pairs are not yet
    asymptotic: dopri5 approaches 5 from below, tsit5 (whose leading error constants are
    minimised) from above."""
    return order - 0.3 < slope < order + 0.5


def _tight_reference(field, t_end):
    """DOP853 near the float64 limit (~1e-14): fifth-order errors reach 1e-13 here."""
    from scipy.integrate import solve_ivp

    out = [
        solve_ivp(field.numpy, (0.0, t_end), y.numpy(), method="DOP853", rtol=3e-14, atol=1e-16).y[
            :, -1
        ]
        for y in field.x0
    ]
    return torch.tensor(np.array(out))


@pytest.mark.parametrize("name", GENERAL)
def test_order_linear_problem_against_matrix_exponential(name):
    problem = LinearProblem()
    dts = [0.1, 0.05, 0.025, 0.0125]
    errors = [
        _global_error(
            lambda: steppers.get(name, problem.rhs), problem.x0, problem.exact(2.0), 2.0, dt
        )
        for dt in dts
    ]
    order = steppers.get(name).order
    assert _shows_order(_slope(dts, errors), order), (name, errors)


@pytest.mark.parametrize("name", GENERAL)
def test_order_nonlinear_problem_against_dop853(name):
    field = NonlinearField()  # no declared structure: implicit steppers run Newton
    reference = _tight_reference(field, 1.0)
    dts = [0.1, 0.05, 0.025, 0.0125]
    errors = [
        _global_error(lambda: steppers.get(name, field), field.x0, reference, 1.0, dt) for dt in dts
    ]
    order = steppers.get(name).order
    assert _shows_order(_slope(dts, errors), order), (name, errors)


def test_registry_lists_the_contract_names():
    for name in [
        "euler",
        "heun",
        "midpoint",
        "rk4",
        "backward_euler",
        "implicit_midpoint",
        "crank_nicolson",
        "leapfrog",
        "exponential",
    ]:
        assert name in steppers.names()
    assert "leapfrog" not in GENERAL and "exponential" not in GENERAL
    assert steppers.get(steppers.REGISTRY.resolve("rk4")).order == 4  # a class is accepted


@pytest.mark.parametrize(
    "tableau",
    [
        steppers.tableau.EULER,
        steppers.tableau.HEUN,
        steppers.tableau.MIDPOINT,
        steppers.tableau.RK4,
    ],
)
def test_tableau_properties(tableau):
    assert sum(tableau.b) == 1
    for ci, row in zip(tableau.c, tableau.a, strict=True):
        assert sum(row) == ci


def test_tableau_rejects_inconsistent_and_low_order_tables():
    F = Fraction
    with pytest.raises(ValueError, match=r"sum\(a\[1\]\)"):
        ButcherTableau(c=(0, F(1, 2)), a=((), (1,)), b=(F(1, 2), F(1, 2)), order=2)
    with pytest.raises(ValueError, match="order-2 condition"):
        ButcherTableau(c=(0, 1), a=((), (1,)), b=(F(3, 4), F(1, 4)), order=2)
    with pytest.raises(ValueError, match="explicit"):
        ButcherTableau(c=(0, 1), a=((), (F(1, 2), F(1, 2))), b=(F(1, 2), F(1, 2)), order=2)


ANALYTIC_R = {
    "euler": lambda z: 1 + z,
    "backward_euler": lambda z: 1 / (1 - z),
    "crank_nicolson": lambda z: (1 + z / 2) / (1 - z / 2),
    "implicit_midpoint": lambda z: (1 + z / 2) / (1 - z / 2),
    "rk4": lambda z: 1 + z + z**2 / 2 + z**3 / 6 + z**4 / 24,
    "heun": lambda z: 1 + z + z**2 / 2,
    "midpoint": lambda z: 1 + z + z**2 / 2,
    "exponential": np.exp,
}


@pytest.mark.parametrize("name", sorted(ANALYTIC_R))
def test_measured_stability_function_equals_analytic(name):
    rng = np.random.default_rng(1)
    z = rng.uniform(-4, 1, 200) + 1j * rng.uniform(-3, 3, 200)
    np.testing.assert_allclose(
        steppers.stability_function(name, z), ANALYTIC_R[name](z), rtol=1e-12, atol=1e-12
    )


@pytest.mark.parametrize(
    "name", ["backward_euler", "crank_nicolson", "implicit_midpoint", "exponential"]
)
def test_a_stable_steppers_are_bounded_on_the_left_half_plane(name):
    x, y = np.meshgrid(np.linspace(-50, 0, 101), np.linspace(-50, 50, 101))
    R = np.abs(steppers.stability_function(name, x + 1j * y))
    assert R.max() <= 1 + 1e-12


def test_explicit_steppers_are_not_a_stable():
    assert abs(steppers.stability_function("rk4", -3.0 + 0j)) > 1
    assert abs(steppers.stability_function("euler", 1j)) == pytest.approx(np.sqrt(2))


def test_stability_region_figure(tmp_path):
    path = physres.validation.plot_stability_regions(
        ["euler", "rk4", "crank_nicolson"], tmp_path / "regions.png", resolution=101
    )
    assert path.stat().st_size > 10_000


def test_leapfrog_energy_error_stays_bounded_over_1e5_steps():
    ho = HarmonicOscillator()
    x0 = torch.tensor([[1.0, 0.0]])
    traj = physres.rollout(
        steppers.get("leapfrog", ho.rhs), x0, dt=0.1, n_steps=100_000, save_every=50
    )
    drift = (ho.energy(traj.reshape(-1, 2)) - ho.energy(x0)).abs().reshape(-1)
    first, last = drift[: len(drift) // 4].max(), drift[-len(drift) // 4 :].max()
    assert last < 1.01 * first  # bounded oscillation, no secular growth
    assert float(drift.max()) < 0.1**2  # O(dt²) energy error
    # Heun, also second order but not symplectic: |R(i dt)|² = 1 + dt⁴/4, so its energy
    # grows like (1 + dt⁴/4)^n without bound (by 65% over 20 000 steps).
    heun = physres.rollout(
        steppers.get("heun", ho.rhs), x0, dt=0.1, n_steps=20_000, save_every=20_000
    )
    expected = (1 + 0.1**4 / 4) ** 20_000
    assert float(ho.energy(heun[:, -1]) / ho.energy(x0)) == pytest.approx(expected, rel=1e-6)


def test_leapfrog_matches_exact_rotation_to_second_order():
    ho = HarmonicOscillator(omega=2.0)
    x0 = torch.tensor([[0.3, 1.0], [1.2, -0.4]])
    dts = [0.02, 0.01, 0.005]
    errors = [
        _global_error(lambda: steppers.get("leapfrog", ho.rhs), x0, ho.exact(x0, 1.0), 1.0, dt)
        for dt in dts
    ]
    assert abs(_slope(dts, errors) - 2) < 0.1


def test_exponential_is_exact_for_linear_fields():
    problem = LinearProblem()
    traj = physres.rollout(steppers.get("exponential", problem.rhs), problem.x0, dt=0.7, n_steps=5)
    torch.testing.assert_close(traj[:, -1], problem.exact(3.5), rtol=1e-12, atol=1e-12)


def test_linear_structure_and_newton_give_the_same_implicit_step():
    problem = LinearProblem()
    for name in ["backward_euler", "implicit_midpoint", "crank_nicolson"]:
        direct = steppers.get(name, problem.rhs)(problem.x0, 0.0, 0.3)
        newton = steppers.get(name, lambda t, x: problem.rhs(t, x))(problem.x0, 0.0, 0.3)
        torch.testing.assert_close(direct, newton, rtol=1e-12, atol=1e-13)


def test_newton_krylov_agrees_with_dense_newton_on_a_large_state():
    n = 300
    lap = (
        torch.diag(torch.full((n,), -2.0))
        + torch.diag(torch.ones(n - 1), 1)
        + torch.diag(torch.ones(n - 1), -1)
    )

    def field(t, u):  # reaction–diffusion, nonlinear
        return 50.0 * u @ lap.T + u - u**3

    x0 = torch.sin(torch.linspace(0, 3, n))[None].repeat(2, 1) * torch.tensor([[1.0], [0.5]])
    krylov = steppers.get("backward_euler", field)  # n > krylov_above: Newton–Krylov
    dense = steppers.get("backward_euler", field, krylov_above=10**6)
    torch.testing.assert_close(krylov(x0, 0.0, 0.05), dense(x0, 0.0, 0.05), rtol=1e-9, atol=1e-10)


def test_implicit_midpoint_conserves_norm_of_a_nonholomorphic_complex_field():
    # ψ' = -i(Kψ + |ψ|²ψ): norm-preserving; implicit midpoint keeps ||ψ||² exactly (quadratic
    # invariant), which requires Newton to treat |ψ|² correctly (real form, not holomorphic).
    n = 16
    K = (
        torch.diag(torch.full((n,), 2.0))
        - torch.diag(torch.ones(n - 1), 1)
        - torch.diag(torch.ones(n - 1), -1)
    )

    def field(t, psi):
        return -1j * (psi @ K.T.to(psi.dtype) + psi.abs() ** 2 * psi)

    psi = torch.exp(-(torch.linspace(-3, 3, n) ** 2)).to(torch.complex128)[None] * (1 + 0.5j)
    step = steppers.get("implicit_midpoint", field)
    norm0 = psi.abs().pow(2).sum()
    for _ in range(50):
        psi = step(psi, 0.0, 0.1)
    assert float((psi.abs().pow(2).sum() - norm0).abs() / norm0) < 1e-12


def test_gradcheck_through_newton_krylov_and_parameters():
    weight = torch.tensor([0.7, -0.3, 0.2, 0.5, -0.4], requires_grad=True)
    n = weight.shape[0]

    class Field(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(weight.detach().clone())

        def forward(self, t, x):
            return torch.tanh(x * self.w) - 0.5 * x

    field = Field()
    step = steppers.get("crank_nicolson", field, krylov_above=1)  # force Newton–Krylov
    x0 = torch.linspace(-1, 1, n)[None].repeat(2, 1).requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda x, w: _with_weight(field, w, lambda: step(x, 0.0, 0.4)), (x0, weight)
    )


def _with_weight(module, w, fn):
    original = module.w
    del module.w
    module.w = w  # plain tensor attribute so gradcheck's perturbations reach the field
    try:
        return fn()
    finally:
        del module.w
        module.w = original


# --- bad input --------------------------------------------------------------------------------


def test_unknown_stepper_lists_valid_names():
    with pytest.raises(ValueError, match=r"unknown stepper 'rk5'.*valid names: .*rk4"):
        steppers.get("rk5", lambda t, x: x)


def test_non_callable_field():
    with pytest.raises(TypeError, match="`field` must be callable"):
        steppers.get("rk4", 3.0)


def test_wrong_state_shape_names_expected_shape():
    problem = LinearProblem()
    with pytest.raises(ValueError, match=r"`x` must have shape \(batch, 3\), got \(2, 4\)"):
        steppers.get("rk4", problem.rhs)(torch.zeros(2, 4), 0.0, 0.1)


@pytest.mark.parametrize("dt", [0.0, -0.1, float("nan"), float("inf")])
def test_bad_dt(dt):
    with pytest.raises(ValueError, match="`dt` must be finite and > 0"):
        steppers.get("euler", lambda t, x: x)(torch.ones(1, 2), 0.0, dt)


def test_non_finite_initial_state():
    with pytest.raises(ValueError, match="`x0` contains non-finite|`x` contains non-finite"):
        physres.rollout(
            steppers.get("rk4", lambda t, x: x),
            torch.tensor([[1.0, float("nan")]]),
            dt=0.1,
            n_steps=3,
        )


def test_newton_that_cannot_converge_says_so():
    # z = x + dt(z² + 1) has no real root for x = 1, dt = 1.
    step = steppers.get("backward_euler", lambda t, x: x**2 + 1, max_iter=15)
    with pytest.raises(
        physres.ConvergenceError,
        match=r"Newton did not converge.*iterations.*"
        r"residual.*reduce `dt`",
    ) as info:
        step(torch.ones(1, 1), 0.0, 1.0)
    # damped Newton slides to the minimum of |G| = |z - z² - 2| at z = 1/2 (1.75), where J = 0
    assert info.value.residual == pytest.approx(1.75, rel=1e-6)
    assert 1 <= info.value.iterations <= 15


def test_rollout_divergence_names_step_and_time_and_keeps_the_trajectory():
    step = steppers.get("euler", lambda t, x: -1000.0 * x)
    with pytest.raises(physres.DivergenceError, match=r"step \d+ \(t = ") as info:
        physres.rollout(step, torch.ones(1, 1), dt=0.01, n_steps=10_000)
    err = info.value
    assert err.trajectory.shape[1] == err.step and torch.isfinite(err.trajectory).all()
    assert err.time == pytest.approx(0.01 * err.step)


def test_rollout_shapes_and_save_every():
    traj = physres.rollout(
        steppers.get("rk4", lambda t, x: -x), torch.ones(4, 2, 3), dt=0.1, n_steps=10, save_every=5
    )
    assert traj.shape == (4, 3, 2, 3)
    torch.testing.assert_close(traj[:, -1], torch.full((4, 2, 3), np.exp(-1.0)), rtol=1e-6, atol=0)
    with pytest.raises(ValueError, match="`save_every`"):
        physres.rollout(
            steppers.get("rk4", lambda t, x: -x), torch.ones(1, 1), 0.1, 10, save_every=0
        )


@pytest.mark.parametrize("dt", [0.01, 0.025, 0.03, 0.3])
def test_exponential_step_is_exact_to_round_off_for_small_steps(dt):
    # torch.linalg.matrix_exp is ~2e-11 off near ||dt·A|| = 0.03; the exact step must not be.
    ho = physres.systems.get("harmonic_oscillator")
    x0 = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    x1 = steppers.get("exponential", ho.rhs)(x0, 0.0, dt)
    exact = torch.tensor([[np.cos(dt), -np.sin(dt)]], dtype=torch.float64)
    torch.testing.assert_close(x1, exact, rtol=0, atol=1e-15)


def test_dense_newton_on_a_large_batch_is_right_whatever_the_thread_count():
    # torch's CPU batched LU has returned wrong solutions above ~128 rows with several
    # threads; physres factorises such batches matrix by matrix. Check the step's residual.
    n = 200
    A = (
        torch.diag(torch.full((n,), -2.0))
        + torch.diag(torch.ones(n - 1), 1)
        + torch.diag(torch.ones(n - 1), -1)
    )

    def field(t, u):
        return 20.0 * u @ A.T - u**3

    x0 = torch.rand(3, n, generator=torch.Generator().manual_seed(3))
    step = steppers.get("backward_euler", field, krylov_above=10**6)
    torch.set_num_threads(2)  # the fault needs several threads (conftest restores the count)
    x1 = step(x0, 0.0, 0.1)
    torch.testing.assert_close(x1, x0 + 0.1 * field(0.0, x1), rtol=1e-10, atol=1e-10)

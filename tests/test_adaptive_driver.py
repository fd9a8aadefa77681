"""The adaptive driver: per-sample control, status codes, step floor, backward integration,
field shape checks, atol = 0, and the global-error estimate."""

import math

import numpy as np
import pytest
import torch
from problems import LinearProblem, NonlinearField, Robertson

import physres
from physres import Status, steppers


def _lorenz(t, x):
    a, b, c = x.unbind(-1)
    return torch.stack([10 * (b - a), a * (28 - c) - b, a * b - 8 / 3 * c], -1)


LORENZ_X0 = torch.tensor([[1.0, 1.0, 1.0], [2.0, 0.5, 3.0], [-1.0, 2.0, 20.0]], dtype=torch.float64)


@pytest.mark.parametrize("name", ["dopri5", "tsit5"])
def test_per_sample_is_the_default_and_matches_each_sample_alone(name):
    sol = physres.integrate(
        steppers.get(name, _lorenz),
        LORENZ_X0,
        (0.0, 2.0),
        rtol=1e-7,
        atol=1e-9,
        t_eval=[0.0, 0.5, 2.0],
    )
    assert sol.stats["per_sample"] and sol.stats["n_accepted"].shape == (3,)
    assert sol.status.tolist() == [Status.SUCCESS] * 3
    for i in range(3):
        alone = physres.integrate(
            steppers.get(name, _lorenz),
            LORENZ_X0[i : i + 1],
            (0.0, 2.0),
            rtol=1e-7,
            atol=1e-9,
            t_eval=[0.0, 0.5, 2.0],
        )
        assert int(alone.stats["n_accepted"][0]) == int(sol.stats["n_accepted"][i])
        assert int(alone.stats["n_rejected"][0]) == int(sol.stats["n_rejected"][i])
        torch.testing.assert_close(sol.x[i], alone.x[0], rtol=1e-13, atol=1e-13)
    # samples differ in difficulty, so they took different numbers of steps
    assert len(set(sol.stats["n_accepted"].tolist())) > 1


def test_per_sample_steps_match_scipy_rk45():
    """dopri5 under the default control takes exactly scipy's RK45 steps (same pair, norm and
    controller): an independent check of the whole accept/reject/size loop."""
    from scipy.integrate import solve_ivp

    def fn(t, y):
        return _lorenz(t, torch.tensor(y)[None])[0].numpy()

    sol = physres.integrate(
        steppers.get("dopri5", _lorenz), LORENZ_X0, (0.0, 2.0), rtol=1e-6, atol=1e-8
    )
    for i, y0 in enumerate(LORENZ_X0.numpy()):
        ref = solve_ivp(fn, (0.0, 2.0), y0, method="RK45", rtol=1e-6, atol=1e-8)
        assert int(sol.stats["n_accepted"][i]) == len(ref.t) - 1
        np.testing.assert_allclose(sol.x[i, -1].numpy(), ref.y[:, -1], rtol=1e-9, atol=1e-9)


def test_shared_step_meets_the_same_accuracy_with_more_steps_for_easy_samples():
    per = physres.integrate(
        steppers.get("dopri5", _lorenz),
        LORENZ_X0,
        (0.0, 2.0),
        rtol=1e-7,
        atol=1e-9,
        t_eval=[0.0, 2.0],
    )
    shared = physres.integrate(
        steppers.get("dopri5", _lorenz),
        LORENZ_X0,
        (0.0, 2.0),
        rtol=1e-7,
        atol=1e-9,
        t_eval=[0.0, 2.0],
        per_sample=False,
    )
    assert shared.status.tolist() == [0, 0, 0] and isinstance(shared.stats["n_accepted"], int)
    assert shared.stats["n_accepted"] >= int(per.stats["n_accepted"].max())
    torch.testing.assert_close(shared.x, per.x, rtol=1e-4, atol=1e-4)


def _log_field(t, x):
    return torch.log(x) - torch.log(x) - 1.0  # x' = -1, undefined (nan) once x < 0


def test_a_sample_that_turns_non_finite_fails_alone_with_throw_false():
    x0 = torch.tensor([[1.0], [5.0]], dtype=torch.float64)
    sol = physres.integrate(
        steppers.get("dopri5", _log_field),
        x0,
        (0.0, 2.0),
        rtol=1e-6,
        atol=1e-9,
        t_eval=[0.0, 0.5, 2.0],
        throw=False,
    )
    assert sol.status.tolist() == [Status.NON_FINITE, Status.SUCCESS]
    assert not sol.success
    torch.testing.assert_close(sol.x[0, :2, 0], torch.tensor([1.0, 0.5], dtype=torch.float64))
    assert math.isnan(float(sol.x[0, 2, 0]))  # not reached
    torch.testing.assert_close(sol.x[1, :, 0], torch.tensor([5.0, 4.5, 3.0], dtype=torch.float64))


def test_a_sample_that_turns_non_finite_raises_by_default():
    x0 = torch.tensor([[5.0], [1.0]], dtype=torch.float64)
    with pytest.raises(
        physres.DivergenceError, match="sample 1: trial states stayed non-finite.*t = 1"
    ):
        physres.integrate(steppers.get("dopri5", _log_field), x0, (0.0, 2.0))


def test_shared_step_status_and_max_steps_partial_solution():
    problem = Robertson()
    sol = physres.integrate(
        steppers.get("rk4", problem.rhs),
        problem.x0,
        (0.0, 1e5),
        t_eval=[0.0, 1e-3, 1e5],
        max_steps=300,
        throw=False,
    )
    assert sol.status.tolist() == [Status.MAX_STEPS]
    assert bool(torch.isfinite(sol.x[0, 1]).all()) and bool(torch.isnan(sol.x[0, 2]).all())


def test_robertson_to_1e11_with_atol_1e_16_starts_from_t0():
    """The step floor is relative to the current t (at t = 0 it is ~1e-322), not to the span:
    the solve starts and takes steps instead of stopping at a floor set by t1 = 1e11."""
    problem = Robertson()
    sol = physres.integrate(
        steppers.get("backward_euler", problem.rhs),
        problem.x0,
        (0.0, 1e11),
        rtol=1e-4,
        atol=1e-16,
        max_steps=40,
        throw=False,
    )
    assert sol.status.tolist() == [Status.MAX_STEPS]  # ran out of the few steps allowed
    assert sol.stats["n_accepted"] > 10 and float(sol.t[-1]) > 0
    mass = sol.x[0].sum(-1)
    torch.testing.assert_close(mass, torch.ones_like(mass), rtol=1e-9, atol=0)


@pytest.mark.parametrize("name", ["backward_euler", "rk4"])
def test_the_step_floor_message_fits_the_stepper(name):
    """At t = 1e17 the resolution of t is 16: a relaxation time of 1 cannot be resolved."""
    t0 = 1e17
    with pytest.raises(physres.StepSizeError, match="below the resolution of t") as info:
        physres.integrate(steppers.get(name, lambda t, x: -x), torch.ones(1, 1), (t0, t0 + 1e3))
    assert info.value.status == Status.STEP_FLOOR
    assert ("implicit stepper" in str(info.value)) == (name == "rk4")


@pytest.mark.parametrize(
    "name,per_sample", [("dopri5", True), ("dopri5", False), ("bosh3", True), ("rk4", False)]
)
def test_backward_integration_matches_the_exponential(name, per_sample):
    x1 = torch.tensor([[1.0], [0.3]], dtype=torch.float64)
    t_eval = [2.0, 1.5, 0.0]
    sol = physres.integrate(
        steppers.get(name, lambda t, x: -x),
        x1,
        (2.0, 0.0),
        rtol=1e-9,
        atol=1e-12,
        t_eval=t_eval,
        per_sample=per_sample,
    )
    assert sol.t.tolist() == t_eval
    exact = x1[:, None, 0] * torch.exp(2.0 - torch.tensor(t_eval, dtype=torch.float64))
    torch.testing.assert_close(sol.x[..., 0], exact, rtol=1e-7, atol=0)
    with pytest.raises(ValueError, match="`t_eval` must be strictly decreasing"):
        physres.integrate(steppers.get(name, lambda t, x: -x), x1, (2.0, 0.0), t_eval=[0.0, 2.0])


def _wrong_shape(t, x):
    return x.sum(-1, keepdim=True)  # (batch, 1) for a (batch, 3) state: would broadcast


@pytest.mark.parametrize("name", ["dopri5", "rk4", "backward_euler"])
def test_a_field_of_the_wrong_shape_is_named(name):
    x0 = torch.ones(2, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"field `_wrong_shape` returned shape \(2, 1\)"):
        physres.integrate(steppers.get(name, _wrong_shape), x0, (0.0, 1.0))
    with pytest.raises(ValueError, match=r"field `_wrong_shape` returned shape \(2, 1\)"):
        physres.integrate(steppers.get(name, _wrong_shape), x0, (0.0, 1.0), first_step=0.1)
    if name != "backward_euler":  # Newton evaluates the field itself
        with pytest.raises(ValueError, match=r"field `_wrong_shape` returned shape"):
            physres.rollout(steppers.get(name, _wrong_shape), x0, dt=0.1, n_steps=3)


@pytest.mark.parametrize("name", ["dopri5", "rk4"])
def test_atol_zero_with_a_zero_component_does_not_blame_first_step(name):
    x0 = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    sol = physres.integrate(
        steppers.get(name, lambda t, x: -x), x0, (0.0, 1.0), rtol=1e-8, atol=0.0
    )
    assert sol.status.tolist() == [Status.SUCCESS]
    torch.testing.assert_close(
        sol.x[0, -1], torch.tensor([math.exp(-1), 0.0], dtype=torch.float64), rtol=1e-7, atol=0
    )


def test_per_sample_needs_a_stepper_that_supports_it():
    with pytest.raises(ValueError, match="`per_sample=True`"):
        physres.integrate(
            steppers.get("backward_euler", lambda t, x: -x),
            torch.ones(1, 1, dtype=torch.float64),
            (0.0, 1.0),
            per_sample=True,
        )


@pytest.mark.parametrize(
    "name,rtol", [("dopri5", 1e-6), ("bosh3", 1e-5), ("rk4", 1e-6), ("backward_euler", 1e-4)]
)
def test_global_error_estimate_is_within_3x_of_the_true_global_error(name, rtol):
    problem = LinearProblem()
    t_eval = torch.linspace(0.0, 6.0, 7)
    sol = physres.integrate(
        steppers.get(name, problem.rhs),
        problem.x0,
        (0.0, 6.0),
        rtol=rtol,
        atol=rtol * 1e-2,
        t_eval=t_eval,
        global_error=True,
    )
    exact = torch.stack([problem.exact(float(t)) for t in t_eval], dim=1)
    true = (sol.x - exact).abs().flatten(1).amax(1)  # (batch,)
    estimate = sol.stats["global_error_abs"]
    assert estimate.shape == (2,)
    ratio = (estimate / true).numpy()
    assert (ratio > 1 / 3).all() and (ratio < 3).all(), ratio
    assert (sol.stats["global_error"] > 0).all()


def test_nonlinear_field_local_tolerance_per_accepted_step_for_the_pairs():
    """Every accepted step of tsit5 and bosh3 (shared step: every step is returned) meets the
    local tolerance against an exact one-step flow of the linear problem."""
    problem = LinearProblem()
    for name, rtol in [("tsit5", 1e-8), ("bosh3", 1e-6)]:
        atol = rtol * 1e-2
        sol = physres.integrate(
            steppers.get(name, problem.rhs),
            problem.x0,
            (0.0, 4.0),
            rtol=rtol,
            atol=atol,
            per_sample=False,
        )
        h = sol.t.diff()
        flows = torch.linalg.matrix_exp(h[:, None, None] * problem.A)
        exact_next = torch.einsum("nij,bnj->bni", flows, sol.x[:, :-1])
        scale = atol + rtol * torch.maximum(sol.x[:, :-1].abs(), sol.x[:, 1:].abs())
        local = ((sol.x[:, 1:] - exact_next).abs() / scale).pow(2).mean(-1).sqrt()
        assert float(local.max()) < 1.0, (name, float(local.max()))


def test_progress_and_nonlinear_reference():
    field = NonlinearField()
    sol = physres.integrate(
        steppers.get("tsit5", field), field.x0, (0.0, 1.0), rtol=1e-10, atol=1e-12, progress=False
    )
    assert sol.t.tolist() == [0.0, 1.0]
    torch.testing.assert_close(sol.x[:, -1], field.reference(1.0), rtol=1e-8, atol=1e-9)


@pytest.mark.parametrize("per_sample", [True, False])
def test_gradients_flow_through_the_accepted_steps(per_sample):
    """For x' = A x, d(sum x(T))/dx0 = expm(A T)^T 1; the control itself is not differentiated."""
    problem = LinearProblem()
    x0 = problem.x0.clone().requires_grad_(True)
    sol = physres.integrate(
        steppers.get("dopri5", problem.rhs),
        x0,
        (0.0, 2.0),
        rtol=1e-9,
        atol=1e-11,
        t_eval=[0.0, 2.0],
        per_sample=per_sample,
    )
    (grad,) = torch.autograd.grad(sol.x[:, -1].sum(), x0)
    exact = torch.linalg.matrix_exp(2.0 * problem.A).T @ torch.ones(3, dtype=torch.float64)
    torch.testing.assert_close(grad, exact.expand(2, 3), rtol=1e-7, atol=1e-9)

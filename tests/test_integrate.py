"""The adaptive driver: tolerance met against exact solutions, stiff transients, errors."""

import numpy as np
import pytest
import torch
from problems import LinearProblem, NonlinearField, Robertson

import physres
from physres import steppers


@pytest.mark.parametrize(
    "name,rtol", [("rk4", 1e-8), ("heun", 1e-6), ("crank_nicolson", 1e-6), ("backward_euler", 1e-5)]
)
def test_every_accepted_step_meets_the_local_tolerance(name, rtol):
    """The controller bounds the local error of each step (as scipy's do): compare every
    accepted step with the exact flow from the previous accepted state."""
    problem = LinearProblem()
    atol = rtol * 1e-2
    sol = physres.integrate(
        steppers.get(name, problem.rhs), problem.x0, (0.0, 4.0), rtol=rtol, atol=atol
    )
    h = sol.t.diff()
    flows = torch.linalg.matrix_exp(h[:, None, None] * problem.A)  # (n, 3, 3)
    exact_next = torch.einsum("nij,bnj->bni", flows, sol.x[:, :-1])
    scale = atol + rtol * torch.maximum(sol.x[:, :-1].abs(), sol.x[:, 1:].abs())
    local = ((sol.x[:, 1:] - exact_next).abs() / scale).pow(2).mean(-1).sqrt()
    assert float(local.max()) < 1.5, float(local.max())  # the estimate is asymptotic
    assert sol.stats["n_accepted"] == len(h)


def test_rk4_global_error_is_within_tolerance_and_tightens_with_it():
    problem = LinearProblem()
    t_eval = torch.linspace(0.0, 4.0, 9)
    exact = torch.stack([problem.exact(float(t)) for t in t_eval], dim=1)
    errors = []
    for rtol in [1e-6, 1e-8, 1e-10]:
        sol = physres.integrate(
            steppers.get("rk4", problem.rhs),
            problem.x0,
            (0.0, 4.0),
            rtol=rtol,
            atol=rtol * 1e-2,
            t_eval=t_eval,
        )
        assert torch.equal(sol.t, t_eval)
        errors.append(float((sol.x - exact).abs().max() / exact.abs().max()))
        assert errors[-1] < 10 * rtol
    assert errors[0] > 10 * errors[1] > 100 * errors[2]  # ~tol^(p/(p+1)) per decade


def test_without_t_eval_every_accepted_step_is_returned():
    field = NonlinearField()
    sol = physres.integrate(
        steppers.get("rk4", field), field.x0, (0.0, 1.0), rtol=1e-10, atol=1e-12
    )
    assert sol.t[0] == 0.0 and sol.t[-1] == 1.0 and bool((sol.t.diff() > 0).all())
    assert sol.x.shape == (2, len(sol.t), 2)
    torch.testing.assert_close(sol.x[:, -1], field.reference(1.0), rtol=1e-8, atol=1e-9)
    assert sol.stats["n_accepted"] == len(sol.t) - 1


@pytest.mark.parametrize(
    "name,rtol,accuracy", [("backward_euler", 1e-4, 2e-2), ("crank_nicolson", 1e-5, 2e-3)]
)
def test_implicit_steppers_carry_robertson_over_ten_decades(name, rtol, accuracy):
    problem = Robertson()
    t_eval = torch.tensor([0.0, 1e-3, 1.0, 1e2, 1e4, 1e5])
    sol = physres.integrate(
        steppers.get(name, problem.rhs),
        problem.x0,
        (0.0, 1e5),
        rtol=rtol,
        atol=1e-10,
        t_eval=t_eval,
    )
    reference = problem.reference(1e5)
    rel = np.abs(sol.x[0, -1].numpy() - reference) / np.abs(reference)
    assert rel.max() < accuracy, rel  # every species, y2 ~ 1e-10 included
    mass = sol.x[0].sum(-1)
    torch.testing.assert_close(mass, torch.ones_like(mass), rtol=1e-9, atol=0)


def test_explicit_stepper_on_a_stiff_problem_reports_max_steps():
    problem = Robertson()
    with pytest.raises(physres.StepSizeError, match="`max_steps` = 200.*implicit stepper"):
        physres.integrate(
            steppers.get("rk4", problem.rhs),
            problem.x0,
            (0.0, 1e5),
            rtol=1e-6,
            atol=1e-10,
            max_steps=200,
        )


def test_bad_arguments():
    step = steppers.get("rk4", lambda t, x: -x)
    x0 = torch.ones(1, 1)
    with pytest.raises(ValueError, match="`t_span` must be finite with t1 != t0"):
        physres.integrate(step, x0, (1.0, 1.0))
    with pytest.raises(ValueError, match="`rtol`"):
        physres.integrate(step, x0, (0.0, 1.0), rtol=-1)
    with pytest.raises(ValueError, match="`t_eval` must be strictly increasing"):
        physres.integrate(step, x0, (0.0, 1.0), t_eval=[0.0, 0.5, 0.2])
    with pytest.raises(ValueError, match="`t_eval` must lie within"):
        physres.integrate(step, x0, (0.0, 1.0), t_eval=[0.5, 2.0])
    with pytest.raises(ValueError, match="`x` contains non-finite"):
        physres.integrate(step, torch.tensor([[float("inf")]]), (0.0, 1.0))

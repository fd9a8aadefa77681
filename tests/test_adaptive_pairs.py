"""Embedded Runge–Kutta pairs: tableau properties, both orders, FSAL cost, per-sample steps.

Steppers are read from the registry: every stepper with an embedded estimate
(``error_order``) is tested the day it is added.
"""

from fractions import Fraction

import numpy as np
import pytest
import torch
from problems import LinearProblem, NonlinearField

import physres
from physres import steppers
from physres.steppers import ButcherTableau
from physres.steppers import tableau as tb

EMBEDDED = [n for n in steppers.names() if steppers.REGISTRY.resolve(n).error_order is not None]
EXPLICIT_PAIRS = [n for n in EMBEDDED if steppers.REGISTRY.resolve(n).explicit]


def test_the_pairs_are_registered():
    assert {"dopri5", "tsit5", "bosh3"} <= set(EXPLICIT_PAIRS)


@pytest.mark.parametrize("table", [tb.BOSH3, tb.DOPRI5, tb.TSIT5])
def test_tableau_properties(table):
    assert abs(sum(table.b) - 1) < Fraction(1, 10**40)
    assert abs(sum(table.b_hat) - 1) < Fraction(1, 10**40)
    assert table.fsal and table.c[-1] == 1


def test_tableau_checks_the_embedded_row():
    F = Fraction
    good = dict(c=(0, 1), a=((), (1,)), b=(F(1, 2), F(1, 2)), order=2)
    ButcherTableau(**good, b_hat=(1, 0), error_order=1)  # Heun-Euler 2(1)
    with pytest.raises(ValueError, match="order-1 condition fails for `b_hat`"):
        ButcherTableau(**good, b_hat=(F(1, 2), 0), error_order=1)
    with pytest.raises(ValueError, match="`b_hat` is of order 2"):
        ButcherTableau(**good, b_hat=(F(1, 2), F(1, 2)), error_order=1)
    with pytest.raises(ValueError, match="go together"):
        ButcherTableau(**good, b_hat=(1, 0))


def test_a_perturbed_fifth_order_coefficient_is_caught():
    t = tb.TSIT5
    b = list(t.b)
    b[3] += Fraction(1, 10**12)
    b[4] -= Fraction(1, 10**12)  # keeps sum(b) == 1, breaks higher conditions
    with pytest.raises(ValueError, match="order-2 condition"):
        ButcherTableau(c=t.c, a=t.a, b=tuple(b), order=5)


def _local_errors(name, dts):
    """One step from x0 of the main and the embedded solution against the exact flow."""
    problem = LinearProblem()
    main, embedded, estimate = [], [], []
    for dt in dts:
        step = steppers.get(name, problem.rhs)
        x1, err = step._step_with_error(problem.x0, 0.0, dt)
        exact = problem.exact(dt)
        main.append(float((x1 - exact).abs().max()))
        embedded.append(float((x1 - err - exact).abs().max()))
        estimate.append(float(err.abs().max()))
    return main, embedded, estimate


@pytest.mark.parametrize("name", EXPLICIT_PAIRS)
def test_local_orders_of_both_solutions_and_of_the_estimate(name):
    cls = steppers.REGISTRY.resolve(name)
    dts = [0.2, 0.1, 0.05, 0.025]
    main, embedded, estimate = _local_errors(name, dts)
    slope = [np.polyfit(np.log(dts), np.log(e), 1)[0] for e in (main, embedded, estimate)]
    assert abs(slope[0] - (cls.order + 1)) < 0.5, (name, main)
    assert abs(slope[1] - (cls.error_order + 1)) < 0.3, (name, embedded)
    assert abs(slope[2] - (cls.error_order + 1)) < 0.3, (name, estimate)
    # the estimate is the embedded solution's error: the main one is much smaller
    assert main[-1] < 0.2 * embedded[-1], (main, embedded)


@pytest.mark.parametrize("name", EXPLICIT_PAIRS)
def test_plain_step_equals_the_solution_of_the_embedded_step(name):
    field = NonlinearField()
    step = steppers.get(name, field)
    x1, _ = step._step_with_error(field.x0, 0.3, 0.05)
    torch.testing.assert_close(step(field.x0, 0.3, 0.05), x1, rtol=1e-15, atol=1e-15)


@pytest.mark.parametrize("name", EXPLICIT_PAIRS)
def test_per_sample_t_and_dt_equal_stepping_each_row(name):
    field = NonlinearField()
    step = steppers.get(name, field)
    t = torch.tensor([0.1, 0.7], dtype=torch.float64)
    dt = torch.tensor([0.05, -0.02], dtype=torch.float64)
    x1, err = step._step_with_error(field.x0, t, dt)
    for i in range(2):
        xi, ei = step._step_with_error(field.x0[i : i + 1], float(t[i]), float(dt[i]))
        torch.testing.assert_close(x1[i : i + 1], xi, rtol=1e-14, atol=1e-15)
        torch.testing.assert_close(err[i : i + 1], ei, rtol=1e-12, atol=1e-17)


@pytest.mark.parametrize("name", EXPLICIT_PAIRS)
def test_fsal_saves_one_evaluation_per_step_and_nfev_is_honest(name):
    """Shared step: f(t0, x0), one probe for the first step, then stages − 1 per trial."""
    field = NonlinearField()
    step = steppers.get(name, field)
    sol = physres.integrate(step, field.x0, (0.0, 2.0), rtol=1e-7, atol=1e-9, per_sample=False)
    trials = sol.stats["n_accepted"] + sol.stats["n_rejected"]
    assert sol.stats["nfev"] == step.nfev == 2 + (step.tableau.stages - 1) * trials
    torch.testing.assert_close(sol.x[:, -1], field.reference(2.0), rtol=1e-5, atol=1e-6)

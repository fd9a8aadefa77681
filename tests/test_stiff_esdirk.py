"""The ESDIRK pairs kvaerno3/kvaerno5: tableaus, order, embedded estimate, L-stability, the
shared LU, per-sample steps, dtype."""

import dataclasses

import numpy as np
import pytest
import torch
from problems import LinearProblem, NonlinearField, Robertson
from scipy.integrate import solve_ivp

import physres
from physres import steppers
from physres.steppers import esdirk, newton
from physres.steppers.esdirk import KVAERNO3, KVAERNO5, DirkTableau, order_residuals

PAIRS = ["kvaerno3", "kvaerno5"]


def test_rooted_trees_are_counted_as_in_butcher():
    sizes = [esdirk._size(t) for t in esdirk.rooted_trees(6)]
    assert [sizes.count(n) for n in range(1, 7)] == [1, 1, 2, 4, 9, 20]


@pytest.mark.parametrize("tab", [KVAERNO3, KVAERNO5], ids=PAIRS)
def test_tableau_orders_are_exact(tab):
    A = tab.matrix()
    assert max(abs(r) for _, r in order_residuals(A, tab.b, tab.order)) < 1e-11
    assert max(abs(r) for _, r in order_residuals(A, tab.b_hat, tab.error_order)) < 1e-11
    # ... and no higher: some condition of the next order fails clearly
    assert (
        max(abs(r) for n, r in order_residuals(A, tab.b, tab.order + 1) if n == tab.order + 1)
        > 1e-4
    )
    assert (
        max(
            abs(r)
            for n, r in order_residuals(A, tab.b_hat, tab.error_order + 1)
            if n == tab.error_order + 1
        )
        > 1e-4
    )
    assert np.allclose(A.sum(1), tab.c, atol=1e-13)
    assert tuple(tab.b) == tuple(tab.a[-1])  # stiffly accurate


def test_tableau_rejects_broken_tables():
    fields = dataclasses.asdict(KVAERNO5)
    a = [list(r) for r in fields["a"]]
    a[3][1] += 1e-6
    with pytest.raises(ValueError, match=r"sum\(a\[3\]\)"):
        DirkTableau(**{**fields, "a": tuple(map(tuple, a))})
    b_hat = list(fields["b_hat"])
    b_hat[2] += 1e-6  # still sums to 1, no longer second order
    b_hat[3] -= 1e-6
    with pytest.raises(ValueError, match="order-2 condition of `b_hat`"):
        DirkTableau(**{**fields, "b_hat": tuple(b_hat)})
    with pytest.raises(ValueError, match="stiffly accurate"):
        DirkTableau(**{**fields, "b": fields["b_hat"]})


@pytest.mark.parametrize("name", PAIRS)
def test_l_stability(name):
    R = steppers.stability_function(name, np.array([-1e8, -1e4, -1e2]))
    assert abs(R[0]) < 1e-6 and abs(R[1]) < 1e-2  # R(−∞) = 0
    y = np.linspace(-50, 50, 201)
    assert np.abs(steppers.stability_function(name, 1j * y)).max() <= 1 + 1e-12  # A-stable
    z = np.array([-0.1, 0.05j, -0.05 + 0.05j])
    p = steppers.REGISTRY.resolve(name).order
    assert np.abs(steppers.stability_function(name, z) - np.exp(z)).max() < 0.1 ** (p + 1)


@pytest.mark.parametrize("name", PAIRS)
def test_fixed_step_order_against_dop853(name):
    field = NonlinearField()
    reference = field.reference(1.0)
    dts = [0.1, 0.05, 0.025]
    errors = []
    for dt in dts:
        n = round(1.0 / dt)
        traj = physres.rollout(
            steppers.get(name, field, tol=1e-14), field.x0, dt=dt, n_steps=n, save_every=n
        )
        errors.append(float((traj[:, -1] - reference).abs().max()))
    slope = np.polyfit(np.log(dts), np.log(errors), 1)[0]
    assert abs(slope - steppers.REGISTRY.resolve(name).order) < 0.3, errors


@pytest.mark.parametrize("name", PAIRS)
def test_embedded_estimate_tracks_the_true_local_error(name):
    # The estimate is x_next − x_hat: it must match the true local error of the embedded
    # solution x_hat (the main solution is an order more accurate) and scale as h^(q+1).
    field = NonlinearField()
    x0 = field.x0
    est, true = [], []
    hs = [0.08, 0.04, 0.02]
    for h in hs:
        step = steppers.get(name, field, tol=1e-14)
        with torch.no_grad():
            x1, err = step._step_with_error(x0, 0.0, h)
        exact = torch.tensor(
            np.array(
                [
                    solve_ivp(
                        field.numpy, (0.0, h), y.numpy(), method="DOP853", rtol=1e-13, atol=1e-15
                    ).y[:, -1]
                    for y in x0
                ]
            )
        )
        est.append(float(err.abs().max()))
        true.append(float((x1 - err - exact).abs().max()))
        assert float((x1 - exact).abs().max()) < 0.3 * float((x1 - err - exact).abs().max())
    q = steppers.REGISTRY.resolve(name).error_order
    assert abs(np.polyfit(np.log(hs), np.log(est), 1)[0] - (q + 1)) < 0.4, est
    assert 0.7 < est[-1] / true[-1] < 1.4, (est, true)


def test_one_jacobian_and_one_factorisation_per_step(monkeypatch):
    problem = Robertson()
    calls = []
    original = newton._lu_factor
    monkeypatch.setattr(newton, "_lu_factor", lambda J: calls.append(J.shape) or original(J))
    step = steppers.get("kvaerno5", problem.rhs)
    x = torch.tensor([[0.9664597, 3.074626e-5, 0.03350951]], dtype=torch.float64)  # t ≈ 1
    with torch.no_grad():
        step(x, 1.0, 0.05)
    assert step.njev == 1 and calls == [(1, 3, 3)]  # six implicit stages, one LU


@pytest.mark.parametrize("name", PAIRS)
def test_per_sample_steps_equal_separate_steps(name):
    field = NonlinearField()
    x0 = field.x0
    t = torch.tensor([0.0, 0.3], dtype=torch.float64)
    dt = torch.tensor([0.05, 0.11], dtype=torch.float64)
    with torch.no_grad():
        x1, err = steppers.get(name, field, tol=1e-15)._step_with_error(x0, t, dt)
        for i in range(2):
            xi, ei = steppers.get(name, field, tol=1e-15)._step_with_error(
                x0[i : i + 1], float(t[i]), float(dt[i])
            )
            torch.testing.assert_close(x1[i : i + 1], xi, rtol=1e-12, atol=1e-13)
            torch.testing.assert_close(err[i : i + 1], ei, rtol=1e-3, atol=1e-13)
    assert float(err.abs().min()) > 1e-11  # the estimates compared are not round-off


@pytest.mark.parametrize("name", ["backward_euler", "crank_nicolson", "implicit_midpoint", *PAIRS])
def test_implicit_steps_keep_float32(name):
    linear = LinearProblem()
    x32 = linear.x0.float()
    linear.A = linear.A.float()
    assert steppers.get(name, linear.rhs)(x32, 0.0, 0.01).dtype == torch.float32
    stiff = physres.systems.get("hires")  # float64 Jacobian and rates, float32 state
    x32 = stiff.sample_initial(2).float()
    stiff._L, stiff._s, stiff._e = stiff._L.float(), stiff._s.float(), stiff._e.float()
    out = steppers.get(name, stiff.rhs)(x32, 0.0, 0.1)
    assert out.dtype == torch.float32 and bool(torch.isfinite(out).all())


def test_linear_structure_and_newton_give_the_same_step():
    linear = LinearProblem()
    direct = steppers.get("kvaerno5", linear.rhs)(linear.x0, 0.0, 0.05)
    newton = steppers.get("kvaerno5", lambda t, x: x @ linear.A.T, tol=1e-14)(linear.x0, 0.0, 0.05)
    torch.testing.assert_close(direct, newton, rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(direct, linear.exact(0.05), rtol=0, atol=1e-8)


def test_per_sample_float32_state_stays_float32():
    field = NonlinearField()
    dt = torch.tensor([0.05, 0.1], dtype=torch.float64)
    with torch.no_grad():
        x1, err = steppers.get("kvaerno5", field)._step_with_error(
            field.x0.float(), torch.zeros(2), dt
        )
    assert x1.dtype == err.dtype == torch.float32

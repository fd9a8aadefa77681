"""The compiled per-sample loop for ESDIRK pairs (``integrate(..., compile=True)`` with
``kvaerno5``/``kvaerno3``): a masked simplified Newton inside the compiled ``while_loop``.

Its steps differ from the eager loop's (a different Newton), so it is checked against
independent truths: scipy Radau at rtol 1e-10 on Robertson (digits and mass conservation), the
matrix exponential on a linear stiff system, each sample solved alone, an exact blow-up time.
Every compile costs tens of seconds to minutes, so compiled solves are shared through
module-scoped fixtures and the tests that compile are marked slow.
"""

import math
import warnings

import numpy as np
import pytest
import torch

import physres
from physres import Status, steppers
from physres.errors import CompileFallbackWarning
from physres.systems.stiff import scd

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

RTOL, ATOL, T_END = 1e-6, 1e-14, 40.0


def _compiled(stepper, x0, t_span, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("error", CompileFallbackWarning)
        sol = physres.integrate(stepper, x0, t_span, compile=True, **kw)
    assert sol.stats["compile"]["compiled"], sol.stats["compile"]
    return sol


@pytest.fixture(scope="module")
def robertson():
    """Robertson, batch 6, t = 0 … 40 at rtol 1e-6: the compiled and the eager solve, one
    compiled stepper (reused by the tests below), and scipy Radau at rtol 1e-10."""
    from scipy.integrate import solve_ivp

    # a module fixture is set up before the autouse float64 default of conftest, and the
    # compiled loop guards on the default dtype: set it here as the tests will have it
    dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    system = physres.systems.get("robertson")
    x0 = system.sample_initial(6, seed=0)
    kw = dict(rtol=RTOL, atol=ATOL, t_eval=[0.0, 1.0, T_END])
    stepper = steppers.get("kvaerno5", system.rhs, atol=1e-3 * ATOL)
    compiled = _compiled(stepper, x0, (0.0, T_END), **kw)
    eager = physres.integrate(
        steppers.get("kvaerno5", system.rhs, atol=1e-3 * ATOL), x0, (0.0, T_END), compile=False,
        **kw,
    )  # fmt: skip
    ref = np.stack(
        [
            solve_ivp(
                system.numpy_rhs, (0.0, T_END), y0, method="Radau", rtol=1e-10, atol=1e-20,
                jac=system.numpy_jacobian, t_eval=kw["t_eval"],
            ).y.T
            for y0 in x0.numpy()
        ]
    )  # fmt: skip
    torch.set_default_dtype(dtype)
    return dict(
        system=system, x0=x0, kw=kw, stepper=stepper, compiled=compiled, eager=eager, ref=ref
    )


@pytest.mark.slow
def test_compiled_kvaerno5_reaches_the_tolerance_on_robertson_and_conserves_mass(robertson):
    compiled, eager, ref, x0 = (robertson[k] for k in ("compiled", "eager", "ref", "x0"))
    assert compiled.status.tolist() == [Status.SUCCESS] * 6
    assert compiled.stats["compile"]["compile_s"] > 0
    digits = [scd(compiled.x[i, -1].numpy(), ref[i, -1]) for i in range(6)]
    eager_digits = [scd(eager.x[i, -1].numpy(), ref[i, -1]) for i in range(6)]
    # rtol 1e-6: about six digits, as the eager loop (7.2 on these samples)
    assert min(digits) >= 6.0, digits
    assert min(digits) >= min(eager_digits) - 0.5, (digits, eager_digits)
    # at t = 1 too, against Radau, in the integrator's own error norm
    err = np.abs(compiled.x[:, 1].numpy() - ref[:, 1]) / (ATOL + RTOL * np.abs(ref[:, 1]))
    assert float(err.max()) < 30, err.max()
    # every stage is a linear combination of field values: the mass is conserved to round-off
    mass = compiled.x.sum(-1) - x0.sum(-1, keepdim=True)
    assert float(mass.abs().max()) < 1e-14
    # the steps are per sample, a handful like the eager loop's (not a step-for-step match)
    n_acc, n_rej = compiled.stats["n_accepted"], compiled.stats["n_rejected"]
    assert n_acc.shape == (6,) and len(set(n_acc.tolist())) > 1
    assert int((n_acc + n_rej).max()) <= 2 * int(
        (eager.stats["n_accepted"] + eager.stats["n_rejected"]).max()
    )
    # per-sample evaluations: one field value per attempt plus ≥ 2 Newton iterations per stage
    nfev_s = compiled.stats["nfev_per_sample"]
    assert bool((nfev_s >= (1 + 6 * 2) * (n_acc + n_rej)).all())
    assert compiled.stats["nfev"] >= int(nfev_s.max())


@pytest.mark.slow
def test_compiled_solve_reuses_its_loop_and_each_sample_alone_is_the_same(robertson):
    stepper, x0, kw, compiled = (robertson[k] for k in ("stepper", "x0", "kw", "compiled"))
    again = physres.integrate(stepper, x0.flip(0), (0.0, T_END), compile="auto", **kw)
    report = again.stats["compile"]
    assert report["compiled"] and report["compile_s"] == 0, report
    torch.testing.assert_close(again.x.flip(0), compiled.x, rtol=1e-12, atol=1e-18)
    for i in range(x0.shape[0]):  # batch 1: one more compile, shared by every sample
        alone = _compiled(stepper, x0[i : i + 1], (0.0, T_END), **kw)
        for key in ["n_accepted", "n_rejected", "nfev_per_sample"]:
            assert alone.stats[key].tolist() == compiled.stats[key][i : i + 1].tolist(), key
        torch.testing.assert_close(alone.x[0], compiled.x[i], rtol=1e-12, atol=1e-18)


@pytest.mark.slow
def test_compiled_kvaerno3_meets_its_tolerance_on_a_linear_stiff_system():
    # eigenvalues −1, −100, −1e4 (non-normal); no analytic Jacobian: forward-mode autodiff
    from scipy.linalg import expm

    V = torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, 1.0], [1.0, 0.0, 1.0]], dtype=torch.float64)
    A = V @ torch.diag(torch.tensor([-1.0, -100.0, -1e4], dtype=torch.float64)) @ V.inverse()
    x0 = torch.tensor([[1.0, 2.0, 3.0], [-1.0, 0.5, 0.0]], dtype=torch.float64)
    rtol, atol, t_eval = 1e-5, 1e-8, [0.0, 0.01, 0.5, 2.0]
    AT = A.T.contiguous()  # (a view of a captured tensor, A.T, would not trace in while_loop)
    sol = _compiled(
        steppers.get("kvaerno3", lambda t, x: x @ AT), x0, (0.0, 2.0), rtol=rtol, atol=atol,
        t_eval=t_eval,
    )  # fmt: skip
    assert sol.status.tolist() == [Status.SUCCESS] * 2
    exact = torch.stack(
        [x0 @ torch.tensor(expm(A.numpy() * t)).T for t in t_eval], dim=1
    )  # (batch, n_t, 3)
    err = (sol.x - exact).abs() / (atol + rtol * exact.abs())
    assert float(err.max()) < 10, float(err.max())  # the global error is tolerance-sized
    # stiff: an explicit pair would need ~7000 steps (|hλ| ≲ 2.8 at λ = −1e4 over t = 2)
    assert int(sol.stats["n_accepted"].max()) < 1000


def _square(t, x):
    return x * x  # x' = x²: x(t) = x0 / (1 − x0·t), blows up at t = 1/x0


@pytest.mark.slow
def test_a_sample_that_blows_up_is_reported_and_the_others_are_exact():
    x0 = torch.tensor([[0.25], [1.0], [0.1]], dtype=torch.float64)  # sample 1 blows up at t = 1
    t_eval = [0.0, 0.5, 2.0]
    stepper = steppers.get("kvaerno3", _square)
    sol = _compiled(stepper, x0, (0.0, 2.0), rtol=1e-7, atol=1e-9, t_eval=t_eval, throw=False)
    assert sol.status[0] == Status.SUCCESS and sol.status[2] == Status.SUCCESS
    assert sol.status[1] in (Status.NEWTON_FAILURE, Status.NON_FINITE, Status.STEP_FLOOR)
    assert bool(torch.isnan(sol.x[1, 2]).all()) and not bool(torch.isnan(sol.x[1, :2]).any())
    for i in (0, 2):
        exact = torch.tensor([float(x0[i]) / (1 - float(x0[i]) * t) for t in t_eval])
        torch.testing.assert_close(sol.x[i, :, 0], exact.to(sol.x.dtype), rtol=1e-5, atol=0)
    torch.testing.assert_close(
        sol.x[1, 1, 0], torch.tensor(2.0, dtype=torch.float64), rtol=1e-5, atol=0
    )
    # with throw=True the same solve raises, naming the sample
    with pytest.raises(physres.StepSizeError, match="sample 1:"):
        physres.integrate(
            stepper, x0, (0.0, 2.0), rtol=1e-7, atol=1e-9, t_eval=t_eval, compile=True
        )


@pytest.mark.slow
def test_newton_that_cannot_converge_rejects_its_steps_and_says_so():
    # one Newton iteration per stage gives no contraction rate: a stage converges only when its
    # first increment is already negligible, i.e. at tiny steps; the solve crawls and stops
    x0 = torch.tensor([[1.0], [2.0]], dtype=torch.float64)
    stepper = steppers.get("kvaerno3", lambda t, x: -50.0 * x * x * x, max_iter=1)
    kw = dict(rtol=1e-6, atol=1e-9, max_steps=300)
    sol = _compiled(stepper, x0, (0.0, 1.0), throw=False, **kw)
    assert set(sol.status.tolist()) <= {Status.NEWTON_FAILURE, Status.MAX_STEPS}
    assert bool((sol.stats["n_rejected"] > 10).all())  # rejected for Newton failure
    assert bool(torch.isnan(sol.x[:, -1]).all())  # t = 1 not reached: NaN, not a wrong state
    with pytest.raises(physres.StepSizeError, match="sample 0:"):
        physres.integrate(stepper, x0, (0.0, 1.0), compile=True, **kw)


def test_what_the_masked_newton_cannot_serve_runs_eagerly_with_a_warning():
    decay = torch.tensor([[1.0 + 1.0j], [2.0 - 0.5j]], dtype=torch.complex128)
    with pytest.warns(CompileFallbackWarning, match="complex states"):
        sol = physres.integrate(
            steppers.get("kvaerno5", lambda t, x: -x), decay, (0.0, 1.0), compile=True
        )
    assert not sol.stats["compile"]["compiled"]
    torch.testing.assert_close(sol.x[:, -1], decay * math.exp(-1), rtol=1e-5, atol=0)
    x0 = torch.tensor([[1.0], [2.0]], dtype=torch.float64, requires_grad=True)
    with pytest.warns(CompileFallbackWarning, match="gradients are needed"):
        sol = physres.integrate(
            steppers.get("kvaerno3", lambda t, x: -x), x0, (0.0, 1.0), compile=True
        )
    sol.x[:, -1].sum().backward()
    torch.testing.assert_close(x0.grad, torch.full_like(x0, math.exp(-1)), rtol=1e-4, atol=0)
    with pytest.warns(CompileFallbackWarning, match="step doubling"):
        physres.integrate(
            steppers.get("rk4", lambda t, x: -x), x0.detach(), (0.0, 1.0), per_sample=True,
            compile=True,
        )  # fmt: skip


def test_the_masked_inverse_and_newton_solve_small_systems():
    from physres.steppers.newton import gauss_jordan_inverse, masked_factor, masked_newton

    g = torch.Generator().manual_seed(0)
    M = torch.randn(5, 4, 4, generator=g, dtype=torch.float64)
    M[0, :, 0] = 0.0  # singular
    M[1] = torch.tensor([[0.0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 2], [0, 0, 3, 0]])  # pivots
    inverse, ok = gauss_jordan_inverse(M)
    assert ok.tolist() == [False, True, True, True, True]
    torch.testing.assert_close(inverse[1:], torch.linalg.inv(M[1:]), rtol=1e-10, atol=1e-12)
    # z = b + a·tanh(z) per sample, with the Jacobian frozen at b (a chord iteration)
    b = torch.randn(5, 4, generator=g, dtype=torch.float64)
    a = torch.tensor([0.1, 0.5, 0.2, 0.3, 0.2], dtype=torch.float64).reshape(5, 1)
    solve, ok = masked_factor(torch.diag_embed(1 - a / torch.cosh(b) ** 2))
    live = torch.tensor([True, True, True, True, False])
    z, conv, n, it = masked_newton(
        lambda z: z - b - a * torch.tanh(z), b.clone(), solve, live, tol=1e-12, atol=1e-12,
        max_iter=30,
    )  # fmt: skip
    assert conv.tolist() == [True] * 4 + [False] and n[4] == 0
    torch.testing.assert_close(z[:4], b[:4] + a[:4] * torch.tanh(z[:4]), rtol=0, atol=1e-11)
    assert int(it) == int(n.max()) and bool((n[:4] >= 2).all())

"""The compiled per-sample loop (``integrate(..., compile=True)``): the same accepted and
rejected steps, nfev and statuses as the eager loop, states to round-off, and the eager
fallback where a compiled loop does not apply."""

import math
import warnings

import pytest
import torch
from problems import Robertson

import physres
from physres import Status, steppers
from physres.errors import CompileFallbackWarning

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _lorenz(t, x):
    a, b, c = x.unbind(-1)
    return torch.stack([10 * (b - a), a * (28 - c) - b, a * b - 8 / 3 * c], -1)


LORENZ_X0 = torch.tensor([[1.0, 1.0, 1.0], [2.0, 0.5, 3.0], [-1.0, 2.0, 20.0]], dtype=torch.float64)


def _both(name, field, x0, t_span, stepper=None, **kw):
    eager = physres.integrate(steppers.get(name, field), x0, t_span, compile=False, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CompileFallbackWarning)
        stepper = stepper or steppers.get(name, field)
        compiled = physres.integrate(stepper, x0, t_span, compile=True, **kw)
    assert compiled.stats["compile"]["compiled"], compiled.stats["compile"]
    assert not eager.stats["compile"]["compiled"]
    return eager, compiled


def _same_steps(eager, compiled):
    for key in ["n_accepted", "n_rejected", "nfev_per_sample"]:
        assert compiled.stats[key].tolist() == eager.stats[key].tolist(), key
    assert compiled.stats["nfev"] == eager.stats["nfev"]
    assert compiled.status.tolist() == eager.status.tolist()


def test_compiled_loop_takes_the_eager_steps_and_matches_scipy():
    from scipy.integrate import solve_ivp

    t_eval = [0.0, 0.5, 1.25, 2.0]
    stepper = steppers.get("tsit5", _lorenz)
    eager, compiled = _both(
        "tsit5", _lorenz, LORENZ_X0, (0.0, 2.0), stepper, rtol=1e-7, atol=1e-9, t_eval=t_eval
    )
    _same_steps(eager, compiled)
    assert compiled.stats["compile"]["compile_s"] > 0
    assert len(set(compiled.stats["n_accepted"].tolist())) > 1  # per-sample steps
    torch.testing.assert_close(compiled.x, eager.x, rtol=1e-10, atol=1e-10)
    for i in range(3):
        ref = solve_ivp(
            lambda t, y: _lorenz(t, torch.tensor(y)).numpy(),
            (0.0, 2.0),
            LORENZ_X0[i].numpy(),
            method="DOP853",
            rtol=1e-12,
            atol=1e-12,
            t_eval=t_eval,
        )
        truth = torch.tensor(ref.y.T)
        err = ((compiled.x[i] - truth).abs() / truth.abs().clamp(min=1)).max()
        assert float(err) < 1e-4
    # a second solve with new initial states and output times reuses the compiled loop
    kw = dict(rtol=1e-7, atol=1e-9, t_eval=[0.0, 0.3, 1.0, 2.0])
    again = physres.integrate(stepper, LORENZ_X0.flip(0), (0.0, 2.0), compile="auto", **kw)
    assert again.stats["compile"]["compiled"] and again.stats["compile"]["compile_s"] == 0
    eager = physres.integrate(stepper, LORENZ_X0.flip(0), (0.0, 2.0), compile=False, **kw)
    _same_steps(eager, again)
    torch.testing.assert_close(again.x, eager.x, rtol=1e-10, atol=1e-10)


def test_gradients_implicit_stages_and_the_shared_step_fall_back_to_eager():
    x0 = LORENZ_X0.clone().requires_grad_(True)
    with pytest.warns(CompileFallbackWarning, match="gradients are needed"):
        sol = physres.integrate(
            steppers.get("dopri5", _lorenz), x0, (0.0, 0.2), rtol=1e-6, compile=True
        )
    assert not sol.stats["compile"]["compiled"]
    sol.x[:, -1].sum().backward()
    assert x0.grad is not None and bool(torch.isfinite(x0.grad).all())
    decay = torch.tensor([[1.0], [2.0]], dtype=torch.float64)
    with pytest.warns(CompileFallbackWarning, match="step doubling"):
        sol = physres.integrate(
            steppers.get("rk4", lambda t, x: -x), decay, (0.0, 1.0), per_sample=True, compile=True
        )
    torch.testing.assert_close(sol.x[:, -1], decay * math.exp(-1), rtol=1e-5, atol=0)
    with pytest.warns(CompileFallbackWarning, match="shared step"):
        physres.integrate(
            steppers.get("dopri5", lambda t, x: -x),
            decay,
            (0.0, 1.0),
            per_sample=False,
            compile=True,
        )
    # "auto" never compiles a short solve on first use, and warns of nothing
    with warnings.catch_warnings():
        warnings.simplefilter("error", CompileFallbackWarning)
        sol = physres.integrate(steppers.get("bosh3", lambda t, x: -x), decay, (0.0, 1.0))
    assert not sol.stats["compile"]["compiled"]


def test_bad_compile_argument_is_named():
    with pytest.raises(ValueError, match="`compile` must be"):
        physres.integrate(
            steppers.get("dopri5", lambda t, x: -x), torch.ones(1, 1), (0.0, 1.0), compile="yes"
        )


def _log_field(t, x):
    return torch.log(x) - torch.log(x) - 1.0  # x' = -1, undefined (nan) once x < 0


@pytest.mark.slow
def test_compiled_failures_match_the_eager_loop():
    x0 = torch.tensor([[1.0], [5.0]], dtype=torch.float64)
    kw = dict(rtol=1e-6, atol=1e-9, t_eval=[0.0, 0.5, 2.0])
    eager, compiled = _both("dopri5", _log_field, x0, (0.0, 2.0), throw=False, **kw)
    _same_steps(eager, compiled)
    assert compiled.status.tolist() == [Status.NON_FINITE, Status.SUCCESS]
    torch.testing.assert_close(compiled.x, eager.x, equal_nan=True, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(
        compiled.x[1, :, 0], torch.tensor([5.0, 4.5, 3.0], dtype=torch.float64)
    )
    messages = []
    for mode in [False, True]:
        with pytest.raises(physres.DivergenceError) as info:
            physres.integrate(
                steppers.get("dopri5", _log_field), x0.flip(0), (0.0, 2.0), compile=mode, **kw
            )
        messages.append(str(info.value))
    assert messages[0] == messages[1] and "sample 1:" in messages[0]
    problem = Robertson()  # stiff: an explicit pair runs out of steps
    eager, compiled = _both(
        "bosh3", problem.rhs, problem.x0, (0.0, 1e5), max_steps=500, throw=False
    )
    _same_steps(eager, compiled)
    assert compiled.status.tolist() == [Status.MAX_STEPS]


@pytest.mark.slow
def test_compiled_backward_integration_matches_the_exponential():
    x0 = torch.tensor([[1.0], [2.0], [-3e-3]], dtype=torch.float64)
    eager, compiled = _both("dopri5", lambda t, x: -x, x0, (1.0, -1.0), rtol=1e-9, atol=1e-12)
    _same_steps(eager, compiled)
    torch.testing.assert_close(compiled.x[:, -1], x0 * math.exp(2), rtol=1e-7, atol=0)


@pytest.mark.slow
def test_auto_compiles_once_eager_solves_of_a_signature_took_long_enough(monkeypatch):
    from physres._adaptive import compiled as compiled_loop

    monkeypatch.setattr(compiled_loop, "AUTO_MIN_SECONDS", 1e-9)
    stepper = steppers.get("dopri5", _lorenz)
    kw = dict(rtol=1e-6, atol=1e-8, t_eval=[0.0, 1.0])
    first = physres.integrate(stepper, LORENZ_X0, (0.0, 1.0), **kw)  # eager, tallied
    second = physres.integrate(stepper, LORENZ_X0, (0.0, 1.0), **kw)  # compiles
    assert not first.stats["compile"]["compiled"] and second.stats["compile"]["compiled"]
    _same_steps(first, second)
    torch.testing.assert_close(second.x, first.x, rtol=1e-10, atol=1e-10)

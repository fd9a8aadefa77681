"""Compiled rollouts (``physres.rollout(..., compile=...)``) against the eager loop."""

import math
import subprocess
import sys
import warnings

import pytest
import torch

import physres
from physres import _compile

pytestmark = pytest.mark.skipif(not _compile.available(), reason="torch.compile unavailable")

FAST = ["rk4", "backward_euler"]  # an explicit RK loop (one fused graph) and a Newton solve


def _decay(t, x):
    return -x + 0.1 * t + 0.5 * torch.tanh(x.flip(-1))


def _problem():
    x0 = torch.tensor([[1.0, -0.5], [0.3, 2.0]], dtype=torch.float64)
    return x0, 0.05, 12


def _compare(name):
    x0, dt, n = _problem()
    step = physres.steppers.get(name, _decay)
    eager = physres.rollout(step, x0, dt, n, save_every=3, compile=False)
    nfev = step.nfev
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", _compile.CompileFallbackWarning)  # Newton: eager
        compiled = physres.rollout(step, x0, dt, n, save_every=3, compile=True, chunk=3)
    torch.testing.assert_close(compiled, eager, rtol=1e-13, atol=1e-14)
    assert step.nfev - nfev == nfev  # field evaluations counted exactly in both
    return _compile.last_run


@pytest.mark.parametrize("name", FAST)
def test_compiled_matches_eager(name):
    report = _compare(name)
    if name == "rk4":  # the explicit loop really ran compiled
        assert report["compiled"] and report["compiled_steps"] >= 6


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in physres.steppers.names(general=True) if n not in FAST])
def test_compiled_matches_eager_whole_registry(name):
    _compare(name)


def test_divergence_names_the_same_step():
    def blowup(t, x):
        return x * x  # x' = x², x(0) = 1: blows up at t = 1

    x0 = torch.ones(3, 1, dtype=torch.float64)
    step = physres.steppers.get("euler", blowup)
    errors = []
    for compile in (False, True):
        with pytest.raises(physres.DivergenceError) as info:
            physres.rollout(step, x0, 0.2, 40, save_every=2, compile=compile, chunk=4)
        errors.append(info.value)
    eager, compiled = errors
    assert eager.step == compiled.step and 8 < eager.step < 40
    assert math.isclose(eager.time, compiled.time)
    torch.testing.assert_close(compiled.trajectory, eager.trajectory)


def test_no_recompile_on_second_call_and_compile_time_reported():
    from torch._dynamo.utils import counters

    x0, dt, n = _problem()
    step = physres.steppers.get("euler", _decay)
    physres.rollout(step, x0, dt, n, compile=True, chunk=2)
    first = dict(_compile.last_run)
    graphs = counters["stats"]["unique_graphs"]
    again = physres.rollout(step, x0 + 0.1, dt, n, compile=True, chunk=2)
    assert counters["stats"]["unique_graphs"] == graphs  # no new graph, no recompile
    assert first["compile_s"] > 0 and _compile.last_run["compile_s"] == 0.0
    assert _compile.last_run["compiled_steps"] == first["compiled_steps"] > 0
    eager = physres.rollout(step, x0 + 0.1, dt, n, compile=False)
    torch.testing.assert_close(again, eager, rtol=1e-13, atol=1e-14)
    # "auto" reuses the compiled chunk (no compile cost left) and stays eager otherwise
    auto = physres.rollout(step, x0 + 0.1, dt, n, chunk=2)
    assert _compile.last_run["compiled"] and _compile.last_run["compile_s"] == 0.0
    torch.testing.assert_close(auto, eager, rtol=1e-13, atol=1e-14)
    physres.rollout(step, x0, dt, n, chunk=3)  # a new signature, a short run: not compiled
    assert not _compile.last_run["compiled"]
    assert counters["stats"]["unique_graphs"] == graphs


def test_uncompilable_stepper_falls_back():
    def data_dependent(t, x):
        if bool((x > 0).all()):  # Python control flow on a tensor value
            return -x
        return x

    x0 = torch.ones(2, 2, dtype=torch.float64)
    step = physres.steppers.get("euler", data_dependent)
    eager = physres.rollout(step, x0, 0.1, 8, compile=False)
    with pytest.warns(_compile.CompileFallbackWarning, match="fell back to eager"):
        forced = physres.rollout(step, x0, 0.1, 8, compile=True, chunk=2)
    assert _compile.last_run["fallback"] and not _compile.last_run["compiled"]
    torch.testing.assert_close(forced, eager, rtol=0, atol=0)
    auto = physres.rollout(step, x0, 0.1, 8)  # "auto": eager (short run), no warning
    torch.testing.assert_close(auto, eager, rtol=0, atol=0)


def test_compile_argument_checked():
    x0, dt, n = _problem()
    step = physres.steppers.get("euler", _decay)
    with pytest.raises(ValueError, match="`compile`"):
        physres.rollout(step, x0, dt, n, compile="yes")
    with pytest.raises(ValueError, match="`chunk`"):
        physres.rollout(step, x0, dt, n, chunk=0)


def test_compiled_step_counts_and_gradients():
    step = physres.steppers.get("heun", _decay)
    fast = _compile.compiled_step(step)
    x = torch.tensor([[0.2, -1.0]], dtype=torch.float64, requires_grad=True)
    y = fast(fast(x, 0.0, 0.1), 0.1, 0.1)
    ref = step(step(x, 0.0, 0.1), 0.1, 0.1)
    torch.testing.assert_close(y, ref, rtol=1e-13, atol=1e-14)
    (g,) = torch.autograd.grad(y.sum(), x)
    (g_ref,) = torch.autograd.grad(ref.sum(), x)
    torch.testing.assert_close(g, g_ref, rtol=1e-12, atol=1e-13)
    assert step.nfev == 8


def test_import_does_not_load_scipy_integrate():
    code = "import physres, sys; print('scipy.integrate' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"

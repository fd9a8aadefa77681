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

# an explicit RK loop (one fused graph), an implicit solve and a symplectic implicit one (Newton
# solves: eager fallback); the rest of the registry is the slow test below
FAST = ["rk4", "backward_euler", "implicit_midpoint"]
# the whole-loop driver with inductor's Python wrapper: compiles in seconds, not tens of seconds
QUICK = {"options": {"cpp_wrapper": False}}
SHARED = {"save_every": 2, "chunk": 4}  # the signature of the module's one C++-wrapper loop


def _decay(t, x):
    return -x + 0.1 * t + 0.5 * torch.tanh(x.flip(-1))


def _problem():
    x0 = torch.tensor([[1.0, -0.5], [0.3, 2.0]], dtype=torch.float64)
    return x0, 0.05, 12


@pytest.fixture(scope="module")
def shared():
    """One ``rk4`` stepper and the report of its first compiled run: the whole loop with the
    default options (inductor's C++ wrapper), compiled once for every test of the module that
    runs this signature ((2, 2) float64 states, dt 0.05, ``SHARED``), whatever their order."""
    x0, dt, n = _problem()
    step = physres.steppers.get("rk4", _decay)
    physres.rollout(step, x0, dt, n, compile=True, **SHARED)
    return step, dict(_compile.last_run)


def test_the_shared_loop_compiled_once_and_reports_it(shared):
    _, first = shared
    assert first["driver"] == "loop" and first["compiled"] and first["compile_s"] > 0
    assert first["compiled_steps"] == 12 and first["eager_steps"] == 0


def _compare(step, compile, save_every=3, chunk=3):
    x0, dt, n = _problem()
    before = step.nfev
    eager = physres.rollout(step, x0, dt, n, save_every=save_every, compile=False)
    nfev = step.nfev - before
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", _compile.CompileFallbackWarning)  # Newton: eager
        compiled = physres.rollout(
            step, x0, dt, n, save_every=save_every, compile=compile, chunk=chunk
        )
    torch.testing.assert_close(compiled, eager, rtol=1e-13, atol=1e-14)
    assert step.nfev - before - nfev == nfev  # field evaluations counted exactly in both
    return _compile.last_run


@pytest.mark.parametrize("name", FAST)
def test_compiled_matches_eager(name, shared):
    if name == "rk4":  # the explicit loop really ran compiled, in one whole-loop call
        report = _compare(shared[0], True, **SHARED)
        assert report["compiled"] and report["compiled_steps"] == 12
        assert report["driver"] == "loop" and report["compile_s"] == 0.0
    else:
        _compare(physres.steppers.get(name, _decay), QUICK)


def _observed(step, x0, dt, n, compile, **kw):
    calls = []
    out = physres.rollout(
        step, x0, dt, n, compile=compile, observer=lambda *a: calls.append(a), **kw
    )
    return out, calls


def _assert_same_run(step, x0, dt, n, compile=QUICK, **kw):
    """The whole-loop run equals the eager one: saved states, observer calls, nfev."""
    nfev = step.nfev
    eager, eager_calls = _observed(step, x0, dt, n, False, **kw)
    nfev_eager = step.nfev - nfev
    loop, loop_calls = _observed(step, x0, dt, n, compile, **kw)
    report = dict(_compile.last_run)
    assert report["driver"] == "loop" and report["compiled_steps"] > 0
    assert step.nfev - nfev - nfev_eager == nfev_eager  # counted exactly in both
    torch.testing.assert_close(loop, eager, rtol=1e-13, atol=1e-14)
    assert [(m, t) for m, t, _ in loop_calls] == [(m, t) for m, t, _ in eager_calls]
    for (_, _, a), (_, _, b) in zip(loop_calls, eager_calls, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-14)
    return report


def test_whole_loop_saves_match_eager_and_do_not_recompile(shared):
    from torch._dynamo.utils import counters

    step = shared[0]  # the field depends on t: times must match
    x0, dt, _ = _problem()
    graphs = counters["stats"]["unique_graphs"]
    # other lengths, start times and initial states: the same compiled loop, no new graph
    first = _assert_same_run(step, x0, dt, 23, compile=True, t0=0.3, **SHARED)
    assert first["compile_s"] == 0.0 and first["compiled_steps"] == 20  # steps 1..20; tail eager
    again = _assert_same_run(step, x0 * 0.5, dt, 41, compile=True, t0=-1.0, **SHARED)
    assert again["compile_s"] == 0.0 and again["compiled_steps"] == 40
    assert counters["stats"]["unique_graphs"] == graphs
    # a transposed (non-contiguous) initial state of the same shape: the same loop
    xt = x0.T.contiguous().T
    _assert_same_run(step, xt, dt, 13, compile=True, **SHARED)
    assert counters["stats"]["unique_graphs"] == graphs


def test_auto_reuses_the_compiled_loop_and_stays_eager_otherwise(shared):
    from torch._dynamo.utils import counters

    step = shared[0]
    x0, dt, n = _problem()
    graphs = counters["stats"]["unique_graphs"]
    eager = physres.rollout(step, x0 + 0.1, dt, n, save_every=2, compile=False)
    # "auto" reuses the compiled loop (no compile cost left) and stays eager otherwise
    auto = physres.rollout(step, x0 + 0.1, dt, n, **SHARED)
    assert _compile.last_run["compiled"] and _compile.last_run["compile_s"] == 0.0
    assert _compile.last_run["driver"] == "loop"
    torch.testing.assert_close(auto, eager, rtol=1e-13, atol=1e-14)
    physres.rollout(step, x0, dt, n, chunk=3)  # a new signature, a short run: not compiled
    assert not _compile.last_run["compiled"]
    assert counters["stats"]["unique_graphs"] == graphs


@pytest.mark.slow
@pytest.mark.parametrize(("save_every", "chunk", "n"), [(8, 4, 37), (6, 4, 40), (1, 5, 17)])
def test_whole_loop_save_points_between_chunks(save_every, chunk, n):
    x0, dt, _ = _problem()
    step = physres.steppers.get("heun", _decay)
    _assert_same_run(step, x0, dt, n, save_every=save_every, chunk=chunk, t0=0.1)


def test_gradients_use_compiled_chunks_not_the_whole_loop():
    x0, dt, n = _problem()
    x0 = x0.clone().requires_grad_(True)
    step = physres.steppers.get("euler", _decay)
    out = physres.rollout(step, x0, dt, 8, compile=True, chunk=2)
    assert _compile.last_run["driver"] == "chunks" and _compile.last_run["compiled"]
    (g,) = torch.autograd.grad(out[:, -1].sum(), x0)
    ref = physres.rollout(step, x0, dt, 8, compile=False)
    (g_ref,) = torch.autograd.grad(ref[:, -1].sum(), x0)
    torch.testing.assert_close(g, g_ref, rtol=1e-12, atol=1e-13)


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in physres.steppers.names(general=True) if n not in FAST])
def test_compiled_matches_eager_whole_registry(name):
    _compare(physres.steppers.get(name, _decay), QUICK)


def test_divergence_names_the_same_step():
    def blowup(t, x):
        return x * x  # x' = x², x(0) = 1: blows up at t = 1

    x0 = torch.ones(3, 1, dtype=torch.float64)
    step = physres.steppers.get("euler", blowup)
    errors = []
    for compile in (False, QUICK):
        with pytest.raises(physres.DivergenceError) as info:
            physres.rollout(step, x0, 0.2, 40, save_every=2, compile=compile, chunk=4)
        errors.append(info.value)
        report = dict(_compile.last_run)
    assert report["driver"] == "loop" and report["compiled_steps"] > 0  # stopped by the loop
    eager, compiled = errors
    assert eager.step == compiled.step and 8 < eager.step < 40
    assert math.isclose(eager.time, compiled.time)
    torch.testing.assert_close(compiled.trajectory, eager.trajectory)
    # x' = x², x(0) = 1 blows up at t = 1: explicit Euler's x_{n+1} = x_n (1 + 0.2 x_n) is finite
    # until it overflows, so the first non-finite step is the first whose value exceeds 1.8e308
    x, first_bad = 1.0, None
    for n in range(1, 40):
        x = x + 0.2 * (x * x)
        if not math.isfinite(x):
            first_bad = n
            break
    assert compiled.step == first_bad and math.isclose(compiled.time, 0.2 * first_bad)
    returned = [
        physres.rollout(
            step,
            x0,
            0.2,
            40,
            save_every=2,
            compile=c,
            chunk=4,
            on_divergence="return",
            full_output=True,
        )
        for c in (False, QUICK)
    ]
    assert returned[0].steps == returned[1].steps == first_bad - 1
    torch.testing.assert_close(returned[1].final, returned[0].final, rtol=1e-12, atol=0)
    torch.testing.assert_close(returned[1].trajectory, returned[0].trajectory, rtol=1e-12, atol=0)


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
    assert "data-dependent" in _compile.last_run["loop_fallback"]  # the whole loop first
    torch.testing.assert_close(forced, eager, rtol=0, atol=0)
    auto = physres.rollout(step, x0, 0.1, 8)  # "auto": eager (short run), no warning
    torch.testing.assert_close(auto, eager, rtol=0, atol=0)


def test_auto_goes_eager_when_the_whole_loop_cannot_trace(monkeypatch):
    # "auto" on a run long enough to pay: the whole loop is tried once, and when it cannot trace
    # the step the run goes on eagerly (no chunk compiles), without a warning
    def data_dependent(t, x):
        return -x if bool((x > 0).all()) else x

    monkeypatch.setattr(_compile, "AUTO_MIN_SECONDS", 0.0)
    x0 = torch.ones(3, 2, dtype=torch.float64)
    step = physres.steppers.get("euler", data_dependent)
    eager = physres.rollout(step, x0, 0.1, 40, compile=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", _compile.CompileFallbackWarning)
        auto = physres.rollout(step, x0, 0.1, 40)
    report = _compile.last_run
    assert "data-dependent" in report["loop_fallback"] and not report.get("fallback")
    assert not report["compiled"] and report["compiled_steps"] == 0
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

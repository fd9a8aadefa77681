"""``physres.rollout``'s observer, failure capture and full output (what validation uses)."""

import math
import time
import warnings

import pytest
import torch

import physres
from physres import _compile
from physres.errors import ConvergenceError, DivergenceError
from physres.rollout import Rollout


def _decay(t, x):
    return -x + 0.1 * t


def _watch():
    seen = []
    return seen, lambda n, t, x: seen.append((n, t, x.clone()))


# compiled: the whole-loop driver with inductor's Python wrapper. Slow (a compile of its own);
# the default run checks a compiled run's observer calls against the eager run's in
# tests/test_compiled_rollout.py (test_whole_loop_saves_match_eager_and_do_not_recompile)
@pytest.mark.parametrize(
    "compile",
    [False, pytest.param({"options": {"cpp_wrapper": False}}, marks=pytest.mark.slow)],
)
def test_observer_sees_every_saved_state_in_order(compile):
    if compile and not _compile.available():
        pytest.skip("torch.compile unavailable")
    x0 = torch.tensor([[1.0], [2.0]], dtype=torch.float64)
    step = physres.steppers.get("rk4", _decay)
    seen, observer = _watch()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", _compile.CompileFallbackWarning)
        traj = physres.rollout(
            step, x0, 0.1, 12, t0=0.5, save_every=3, compile=compile, chunk=3, observer=observer
        )
    assert [n for n, _, _ in seen] == [0, 3, 6, 9, 12]
    assert [t for _, t, _ in seen] == pytest.approx([0.5 + 0.1 * n for n in (0, 3, 6, 9, 12)])
    torch.testing.assert_close(torch.stack([x for _, _, x in seen], 1), traj, rtol=0, atol=0)
    # the exact flow of x' = -x + 0.1 t: rk4's error at dt = 0.1 is ~1e-6
    t = torch.tensor([0.5 + 0.1 * n for n in (0, 3, 6, 9, 12)], dtype=torch.float64)
    c = x0 - 0.1 * (0.5 - 1.0)
    exact = c * torch.exp(-(t - 0.5)) + 0.1 * (t - 1.0)
    torch.testing.assert_close(traj[..., 0], exact, rtol=0, atol=1e-6)


def _blowup(t, x):
    return x * x


def test_on_divergence_return_gives_what_the_error_carries():
    x0 = torch.ones(1, 1, dtype=torch.float64)
    step = physres.steppers.get("euler", _blowup)
    with pytest.raises(DivergenceError) as info:
        physres.rollout(step, x0, 0.5, 40, save_every=2, compile=False)
    out = physres.rollout(
        step, x0, 0.5, 40, save_every=2, compile=False, on_divergence="return", full_output=True
    )
    assert isinstance(out, Rollout) and out.status == "diverged"
    assert out.failed_step == info.value.step and out.steps == info.value.step - 1
    torch.testing.assert_close(out.trajectory, info.value.trajectory, rtol=0, atol=0)
    # the final state is the last finite one: x_{k+1} = x_k + x_k²/2 from x_0 = 1
    x = 1.0
    for _ in range(out.steps):
        x = x + 0.5 * x * x
    assert math.isfinite(x) and out.final.item() == pytest.approx(x, rel=1e-12)
    assert out.t_final == pytest.approx(0.5 * out.steps)
    plain = physres.rollout(step, x0, 0.5, 40, save_every=2, compile=False, on_divergence="return")
    torch.testing.assert_close(plain, out.trajectory, rtol=0, atol=0)


class _FailsAt:
    """A step function whose implicit solve fails from time ``t_fail`` on."""

    def __init__(self, t_fail):
        self.t_fail = t_fail

    def __call__(self, x, t, dt):
        if t >= self.t_fail - 1e-12:
            raise ConvergenceError("Newton did not converge", residual=1.0, iterations=50)
        return x * 0.5


def test_a_failed_solve_is_captured_with_its_step():
    x0 = torch.ones(2, 3, dtype=torch.float64)
    with pytest.raises(ConvergenceError):
        physres.rollout(_FailsAt(0.3), x0, 0.1, 10, compile=False)
    out = physres.rollout(
        _FailsAt(0.3), x0, 0.1, 10, compile=False, on_divergence="return", full_output=True
    )
    assert out.status == "solver failed" and out.steps == 3 and out.failed_step == 4
    assert out.trajectory.shape == (2, 4, 3)
    torch.testing.assert_close(out.final, torch.full((2, 3), 0.125, dtype=torch.float64))


def test_observer_time_is_kept_apart_from_the_stepping():
    x0 = torch.ones(1, 1, dtype=torch.float64)
    out = physres.rollout(
        lambda x, t, dt: x,
        x0,
        0.1,
        4,
        compile=False,
        observer=lambda n, t, x: time.sleep(0.02),
        full_output=True,
    )
    assert out.status == "ok" and out.failure is None and out.steps == 4
    assert out.observer_s >= 5 * 0.02  # five saved states, each observed once
    assert out.wall_s >= 0.0 and _compile.last_run["wall_s"] == out.wall_s


def test_bad_arguments_are_named():
    x0 = torch.ones(1, 1, dtype=torch.float64)
    with pytest.raises(ValueError, match="`on_divergence`.*'ignore'"):
        physres.rollout(lambda x, t, dt: x, x0, 0.1, 2, on_divergence="ignore")
    with pytest.raises(TypeError, match="`observer`.*int"):
        physres.rollout(lambda x, t, dt: x, x0, 0.1, 2, observer=3)

"""invariant_measure_w1 against distributions whose W1 distance is known in closed form; the
split-half noise floor against an exact law."""

import math

import numpy as np
import pytest
import torch
from scipy.stats import norm

from physres.validation import invariant_measure_w1, split_half_w1


def _oscillator(amplitude, n_traj=4, n_t=20_000, dt=0.05, junk=0):
    """(n_traj, junk + n_t, 2) samples of x = A cos(t + φ), p = −A sin(t + φ); ``junk`` leading
    frames far off the orbit (a transient)."""
    t = np.arange(n_t) * dt
    phase = np.linspace(0.0, 2 * np.pi, n_traj, endpoint=False)[:, None]
    orbit = amplitude * np.stack([np.cos(t + phase), -np.sin(t + phase)], -1)
    return np.concatenate([np.full((n_traj, junk, 2), 50.0), orbit], 1)


def test_oscillator_orbits_arcsine_law():
    # on the orbit of amplitude A, x is arcsine-distributed on [−A, A]; W1(A₁X, A₂X) =
    # |A₁ − A₂| E|X| with E|cos| = 2/π, for x and for p alike
    a1, a2 = 1.0, 1.5
    w1 = invariant_measure_w1(_oscillator(a1, junk=300), _oscillator(a2, n_traj=3), transient=300)
    assert w1.shape == (2,)
    np.testing.assert_allclose(w1, (2 / math.pi) * (a2 - a1), rtol=2e-3)
    # the transient matters: without dropping it the junk frames dominate
    assert invariant_measure_w1(_oscillator(a1, junk=300), _oscillator(a2))[0] > 0.4
    # the same orbit sampled from other phases: the same measure
    assert invariant_measure_w1(_oscillator(a1), _oscillator(a1, n_traj=3)).max() < 2e-3


def test_gaussians_and_uniforms_per_component():
    # component 0: N(0, 1) vs N(0.7, 1) (W1 = 0.7); component 1: U[0, 1] vs U[0, 2] (W1 = 1/2)
    q = (np.arange(4000) + 0.5) / 4000
    a = np.stack([norm.ppf(q), q], -1).reshape(2, 2000, 2)
    b = np.stack([norm.ppf(q) + 0.7, 2 * q], -1).reshape(4, 1000, 2)
    w1 = invariant_measure_w1(torch.from_numpy(a), b)
    np.testing.assert_allclose(w1, [0.7, 0.5], rtol=1e-3)
    # every-th frame: the same as slicing by hand, both sides
    np.testing.assert_allclose(
        invariant_measure_w1(a, b, transient=3, every=7),
        invariant_measure_w1(a[:, 3::7], b[:, 3::7]),
    )


def test_state_shape_is_kept():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 50, 3, 2)), rng.normal(size=(3, 40, 3, 2))
    w1 = invariant_measure_w1(a, b)
    assert w1.shape == (3, 2)
    from scipy.stats import wasserstein_distance

    assert w1[2, 1] == pytest.approx(
        wasserstein_distance(a[..., 2, 1].ravel(), b[..., 2, 1].ravel())
    )


def test_bad_input_named():
    a = np.zeros((2, 10, 3))
    with pytest.raises(ValueError, match="`samples`.*state shape"):
        invariant_measure_w1(a, np.zeros((2, 10, 2)))
    with pytest.raises(ValueError, match="`reference`.*batch, n_t"):
        invariant_measure_w1(a, np.zeros((10, 3)))
    with pytest.raises(ValueError, match="`transient`"):
        invariant_measure_w1(a, a, transient=10)
    with pytest.raises(ValueError, match="`every`"):
        invariant_measure_w1(a, a, every=0)
    with pytest.raises(TypeError, match="`every`"):
        invariant_measure_w1(a, a, every=2.0)
    with pytest.raises(ValueError, match="finite"):
        invariant_measure_w1(np.full((1, 5, 3), np.inf), a)


def test_split_half_w1_exact_law():
    # two trajectories at 0 and two at 1: a half is {0, 1} (W1 0) or {0, 0} vs {1, 1} (W1 1);
    # of the 6 ways to pick a half, 2 are pure, so the mean over splits tends to 1/3
    ref = np.array([0.0, 0.0, 1.0, 1.0])[:, None, None] * np.ones((4, 5, 2))
    w = split_half_w1(ref, transient=1, n_splits=600, seed=1)
    assert w.shape == (600, 2)
    assert set(np.unique(w)) == {0.0, 1.0}
    assert np.mean(w[:, 0]) == pytest.approx(1 / 3, abs=0.06)
    np.testing.assert_array_equal(w[:, 0], w[:, 1])
    np.testing.assert_array_equal(w, split_half_w1(ref, transient=1, n_splits=600, seed=1))
    with pytest.raises(ValueError, match="batch >= 2"):
        split_half_w1(ref[:1])
    with pytest.raises(ValueError, match="`n_splits` must be a positive int"):
        split_half_w1(ref, n_splits=0)

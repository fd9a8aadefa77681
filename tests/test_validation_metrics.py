"""Metrics against hand-computed values."""

import math

import numpy as np
import pytest
import torch

from physres.validation import (
    fidelity,
    invariant_drift,
    nrmse,
    relative_l2,
    valid_prediction_time,
    wasserstein1,
)

# one trajectory, three frames of a 2-component state; frame 0 is the context (input)
REF = np.array([[[1.0, 0.0], [3.0, 4.0], [0.0, 2.0]]])
PRED = np.array([[[9.0, 9.0], [3.0, 5.0], [1.0, 2.0]]])


def test_relative_l2_by_hand_and_context_not_scored():
    err = relative_l2(PRED, REF)  # context=1: frame 0 (wrong on purpose) is dropped
    np.testing.assert_allclose(err, [[1 / 5, 1 / 2]])
    np.testing.assert_allclose(
        relative_l2(PRED, REF, context=0), [[math.sqrt(64 + 81), 1 / 5, 1 / 2]]
    )
    # torch input gives the same numbers
    np.testing.assert_allclose(relative_l2(torch.tensor(PRED), torch.tensor(REF)), err)


def test_relative_l2_complex_states():
    ref = np.array([[[1 + 0j, 0j], [1j, 1 + 0j]]])
    pred = np.array([[[1 + 0j, 0j], [0j, 1 + 0j]]])
    np.testing.assert_allclose(relative_l2(pred, ref), [[1 / math.sqrt(2)]])


def test_nrmse_by_hand():
    # scored reference values (frames 1, 2): component 0: {3, 0}, component 1: {4, 2}
    # variances: 2.25 and 1.0 → pooled σ = sqrt((2.25 + 1) / 2)
    sigma = math.sqrt((2.25 + 1.0) / 2)
    expected = np.array([[math.sqrt(1 / 2), math.sqrt(1 / 2)]]) / sigma
    np.testing.assert_allclose(nrmse(PRED, REF), expected)
    np.testing.assert_allclose(nrmse(PRED, REF, scale=2.0), expected * sigma / 2)


def test_metric_input_errors():
    with pytest.raises(ValueError, match="same shape"):
        relative_l2(PRED, REF[:, :2])
    with pytest.raises(ValueError, match="`context`"):
        relative_l2(PRED, REF, context=3)
    with pytest.raises(ValueError, match="zero state"):
        relative_l2(PRED, np.zeros_like(REF))
    with pytest.raises(ValueError, match="`scale`"):
        nrmse(PRED, np.ones_like(REF))
    with pytest.raises(TypeError, match="numeric"):
        relative_l2(np.array([["a"]]), np.array([["b"]]))


def test_valid_prediction_time_constructed_exponential_growth():
    # error e(t) = e0·exp(λ t) crosses the threshold at t* = log(thr/e0)/λ
    lam, e0, thr = 0.9, 1e-6, 0.5
    t = np.arange(1, 2001) * 0.01
    err = e0 * np.exp(lam * t)
    t_star = math.log(thr / e0) / lam
    vpt = valid_prediction_time(err, t, threshold=thr, t0=0.0)
    assert t_star - 0.01 <= vpt <= t_star
    in_lyap = valid_prediction_time(err, t, threshold=thr, t0=0.0, lyapunov_exponent=lam)
    assert in_lyap == pytest.approx(vpt * lam)


def test_valid_prediction_time_edge_cases():
    t = np.array([0.1, 0.2, 0.3, 0.4])
    err = np.array(
        [
            [0.1, 0.2, 0.6, 0.1],  # the later dip below the threshold does not count
            [0.7, 0.1, 0.1, 0.1],  # exceeds at once
            [0.1, 0.1, 0.1, 0.1],  # never exceeds: the horizon (a lower bound)
            [0.1, np.nan, 0.1, 0.1],
        ]
    )  # nan counts as exceeded
    np.testing.assert_allclose(valid_prediction_time(err, t, threshold=0.5), [0.2, 0.0, 0.4, 0.1])
    with pytest.raises(ValueError, match="len\\(t\\)"):
        valid_prediction_time(err, t[:3])
    with pytest.raises(ValueError, match="`lyapunov_exponent`"):
        valid_prediction_time(err, t, lyapunov_exponent=-1.0)


def test_invariant_drift_by_hand():
    values = np.array([[2.0, 2.2, 1.8], [-4.0, -4.0, -3.0]])
    np.testing.assert_allclose(invariant_drift(values), [[0, 0.1, -0.1], [0, 0, 0.25]])
    np.testing.assert_allclose(
        invariant_drift(values, relative=False), [[0, 0.2, -0.2], [0, 0, 1.0]]
    )
    with pytest.raises(ValueError, match="relative=False"):
        invariant_drift(np.array([[0.0, 1.0]]))
    with pytest.raises(ValueError, match="`values`"):
        invariant_drift(np.zeros(3))


def test_fidelity_of_shifted_gaussians_matches_the_analytic_overlap():
    # ψ = (2πσ²)^(-1/4) exp(-x²/(4σ²)); |⟨ψ(x)|ψ(x-d)⟩|² = exp(-d²/(4σ²))
    x = np.linspace(-30, 30, 4001)
    dx = x[1] - x[0]
    sigma, d = 1.3, 0.8

    def psi(c):
        return (2 * np.pi * sigma**2) ** -0.25 * np.exp(-((x - c) ** 2) / (4 * sigma**2))

    kick = np.exp(1j * 0.7 * x)  # a momentum kick k = 0.7
    assert fidelity(psi(0), psi(0), dx) == pytest.approx(1.0, abs=1e-12)
    assert fidelity(psi(0), psi(d), dx) == pytest.approx(
        math.exp(-(d**2) / (4 * sigma**2)), rel=1e-10
    )
    # ⟨ψ|e^{ikx}ψ⟩ is the characteristic function of |ψ|² (variance σ²): |·|² = exp(-k²σ²)
    assert fidelity(psi(0), kick * psi(0), dx) == pytest.approx(
        math.exp(-0.49 * sigma**2), rel=1e-10
    )
    batch = np.stack([psi(0), 2 * psi(0)])
    np.testing.assert_allclose(fidelity(batch, psi(0), dx), [1.0, 4.0], rtol=1e-12)
    np.testing.assert_allclose(fidelity(batch, psi(0), dx, normalize=True), [1.0, 1.0], rtol=1e-12)
    with pytest.raises(ValueError, match="`dx`"):
        fidelity(psi(0), psi(0), 0.0)


def test_wasserstein1_by_hand():
    assert wasserstein1([0.0, 1.0, 3.0], [5.0, 6.0, 8.0]) == pytest.approx(5.0)
    assert wasserstein1([0.0, 1.0], [0.0, 2.0]) == pytest.approx(0.5)
    assert wasserstein1(torch.tensor([[1.0, 2.0]]), [2.0, 1.0]) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="empty"):
        wasserstein1([], [1.0])

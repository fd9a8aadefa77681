"""Largest Lyapunov exponent of a stepper's map against known spectra."""

import math

import numpy as np
import pytest
import torch

import physres
from physres.errors import DivergenceError
from physres.steppers import Stepper
from physres.validation import lyapunov_exponent


class LinearMap(Stepper):
    """``x ↦ M x`` for a fixed matrix: the exponent is ``log ρ(M) / dt``."""

    order = 1
    explicit = True

    def __init__(self, M):
        super().__init__(None, state_shape=(M.shape[0],))
        self.M = M

    def _step(self, x, t, dt):
        return x @ self.M.T


def _nonnormal(eigs, seed=3):
    g = torch.Generator().manual_seed(seed)
    V = torch.eye(len(eigs)) + 0.8 * torch.randn(len(eigs), len(eigs), generator=g)
    return V @ torch.diag(torch.tensor(eigs)) @ torch.linalg.inv(V)


@pytest.mark.parametrize("method", ["jvp", "benettin"])
def test_linear_map_with_known_spectrum(method):
    M = _nonnormal([2.0, -0.5, 0.3])  # non-normal, so the transient matters
    dt = 0.1
    x0 = torch.randn(3, 3)
    lam = lyapunov_exponent(LinearMap(M), x0, dt, n_steps=400, transient=50, method=method)
    assert lam.shape == (3,) and lam.dtype == torch.float64
    np.testing.assert_allclose(lam.numpy(), math.log(2.0) / dt, rtol=1e-6)


def test_complex_eigenvalues_and_complex_states():
    # a scaled rotation (|μ| = 1.1) plus a contracting direction: λ = log 1.1 / dt exactly
    c, s = math.cos(0.4), math.sin(0.4)
    M = torch.tensor([[1.1 * c, -1.1 * s, 0.0], [1.1 * s, 1.1 * c, 0.0], [0.0, 0.0, 0.2]])
    x0 = torch.randn(2, 3)
    lam = lyapunov_exponent(LinearMap(M), x0, 0.5, n_steps=100, transient=20, method="jvp")
    np.testing.assert_allclose(lam.numpy(), math.log(1.1) / 0.5, rtol=1e-10)
    auto = lyapunov_exponent(LinearMap(M), x0, 0.5, n_steps=100, transient=20)  # benettin
    np.testing.assert_allclose(auto.numpy(), math.log(1.1) / 0.5, rtol=1e-8)
    Mc = torch.diag(torch.tensor([0.9j, 0.5 + 0.0j]))
    for method, rtol in (("jvp", 1e-10), ("benettin", 1e-8)):
        lam_c = lyapunov_exponent(
            LinearMap(Mc),
            torch.randn(2, 2, dtype=torch.complex128),
            1.0,
            n_steps=60,
            transient=60,
            method=method,
        )
        np.testing.assert_allclose(lam_c.numpy(), math.log(0.9), rtol=rtol)


@pytest.mark.parametrize("name", ["euler", "rk4", "backward_euler"])
def test_the_exponent_is_the_steppers_not_the_flows(name):
    # field x' = A x with eigenvalues -1 and 0.5: the stepper's map has eigenvalues R(dt·μ)
    A = torch.diag(torch.tensor([-1.0, 0.5]))
    stepper = physres.steppers.get(name, lambda t, x: x @ A.T)
    dt = 0.4
    R = physres.steppers.stability_function(name, dt * np.array([-1.0, 0.5]))
    expected = math.log(np.abs(R).max()) / dt
    lam = lyapunov_exponent(stepper, torch.randn(2, 2), dt, n_steps=120, transient=30)
    np.testing.assert_allclose(lam.numpy(), expected, rtol=1e-8)


def test_bad_input_and_divergence():
    step = LinearMap(torch.eye(2) * 1e200)
    with pytest.raises(ValueError, match="`method`"):
        lyapunov_exponent(step, torch.ones(1, 2), 0.1, 10, method="qr")
    with pytest.raises(ValueError, match="`dt`"):
        lyapunov_exponent(step, torch.ones(1, 2), -0.1, 10)
    with pytest.raises(DivergenceError, match="step 1"):
        lyapunov_exponent(step, torch.full((1, 2), 1e200), 0.1, 10)


@pytest.mark.slow
def test_lorenz63_largest_exponent():
    # λ1 = 0.9056 for σ=10, ρ=28, β=8/3 (Sprott, Chaos and Time-Series Analysis, 2003)
    system = physres.systems.get("lorenz63")
    stepper = physres.steppers.get("rk4", system.rhs)
    x0 = physres.rollout(stepper, system.sample_initial(2, seed=1), 0.01, 2000)[:, -1]
    lam = lyapunov_exponent(stepper, x0, 0.01, n_steps=50_000, transient=1000, method="benettin")
    assert float(lam.mean()) == pytest.approx(0.9056, abs=0.05)


def test_learned_map_tangent_and_two_trajectory_estimates_agree():
    # an (untrained) residual network is a map like any other; float64 so both methods resolve
    torch.manual_seed(0)
    model = physres.models.get("resnet", state_shape=(3,), dt=0.1, width=16, dtype=torch.float64)
    x0 = torch.randn(2, 3)
    jvp = lyapunov_exponent(model, x0, 0.1, n_steps=200, transient=20, method="jvp")
    ben = lyapunov_exponent(model, x0, 0.1, n_steps=200, transient=20, method="benettin")
    assert torch.isfinite(jvp).all()
    np.testing.assert_allclose(jvp.numpy(), ben.numpy(), rtol=1e-4, atol=1e-4)

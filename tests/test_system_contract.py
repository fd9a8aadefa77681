"""Contract tests for every registered system, read from the registry."""

import json

import numpy as np
import pytest
import torch

import physres
from physres import systems


@pytest.mark.parametrize("name", systems.names())
def test_system_contract(name):
    system = systems.get(name)
    x = system.sample_initial(3, seed=1)
    assert x.shape == (3, *system.state_shape) and x.dtype == system.dtype
    torch.testing.assert_close(x, system.sample_initial(3, seed=1), rtol=0, atol=0)  # seeded
    dx = system.rhs(0.0, x)
    assert dx.shape == x.shape and dx.dtype == x.dtype and bool(torch.isfinite(dx).all())
    # batched rhs equals per-sample rhs, and the numpy adapter agrees with torch
    single = torch.cat([system.rhs(0.0, x[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(dx, single, rtol=1e-12, atol=1e-12)
    flat = system.numpy_rhs(0.0, x[0].reshape(-1).numpy())
    np.testing.assert_allclose(flat, dx[0].reshape(-1).numpy(), rtol=1e-12, atol=1e-12)
    for key, value in system.invariants(x).items():
        assert value.shape == (3,), key
    json.dumps(system.params)
    for attr in ("t_end", "dt_save", "reference_rtol", "reference_atol"):
        assert getattr(system, attr) > 0


@pytest.mark.parametrize(
    "name", [n for n in systems.names() if callable(systems.REGISTRY.resolve(n).jacobian)]
)
def test_analytic_jacobian_matches_autograd(name):
    system = systems.get(name)
    x = system.sample_initial(2, seed=2)
    J = system.jacobian(0.3, x)
    n = system.n_state
    auto = torch.func.jacrev(lambda v: system.rhs(0.3, v.reshape(x.shape)).sum(0).reshape(-1))(
        x.reshape(2, n)
    )  # (n, 2, n)
    torch.testing.assert_close(J.reshape(2, n, n), auto.permute(1, 0, 2), rtol=1e-9, atol=1e-9)


def test_unknown_parameter_names_it_and_lists_the_accepted_ones():
    with pytest.raises(
        TypeError,
        match=r"unknown parameter\(s\) `rhoo` for system 'lorenz63'; "
        r"accepted: sigma, rho, beta",
    ):
        physres.systems.get("lorenz63", rhoo=28.0)


def test_unknown_system_lists_valid_names():
    with pytest.raises(ValueError, match=r"unknown system 'lorentz'.*lorenz63"):
        physres.systems.get("lorentz")

"""The Lorenz-96 ring: its field against a direct formula, its energy budget, its attractor."""

import numpy as np
import pytest
import torch

import physres


def direct_rhs(x, F):
    """Lorenz (1996) written site by site with explicit modular indices."""
    n = len(x)
    return np.array(
        [(x[(i + 1) % n] - x[(i - 2) % n]) * x[(i - 1) % n] - x[i] + F for i in range(n)]
    )


@pytest.mark.parametrize("N,F", [(40, 8.0), (7, 3.5)])
def test_rhs_matches_the_site_by_site_formula(N, F):
    system = physres.systems.get("lorenz96", N=N, F=F)
    assert system.state_shape == (N,)
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(4, N)) * 3)
    dx = system.rhs(0.0, x).numpy()
    for b in range(4):
        np.testing.assert_allclose(dx[b], direct_rhs(x[b].numpy(), F), rtol=1e-13, atol=1e-12)


def test_advection_conserves_energy_so_dE_dt_is_forcing_minus_damping():
    system = physres.systems.get("lorenz96")
    x = system.sample_initial(5, seed=1)
    dE = (x * system.rhs(0.0, x)).sum(1)  # d/dt ½Σx² = x·ẋ
    E = system.invariants(x)["energy"]
    torch.testing.assert_close(dE, -2 * E + system.F * x.sum(1), rtol=1e-12, atol=1e-9)
    # F = 0: pure decay, E(t) = E0 e^{-2t} (the quadratic term cannot feed energy)
    free = physres.systems.get("lorenz96", F=0.0)
    step = physres.steppers.get("rk4", free.rhs)
    traj = physres.rollout(step, x, dt=0.001, n_steps=500)
    E_t = free.invariants(traj[:, -1])["energy"]
    torch.testing.assert_close(E_t, E * np.exp(-2 * 0.5), rtol=1e-9, atol=0)


def test_sample_initial_is_on_the_attractor():
    system = physres.systems.get("lorenz96")
    x = system.sample_initial(64, seed=0)
    # climatology of N = 40, F = 8: mean ≈ 2.3, std ≈ 3.6 per site (Lorenz & Emanuel 1998)
    assert 2.0 < float(x.mean()) < 2.7 and 3.3 < float(x.std()) < 3.9
    assert not torch.equal(x, system.sample_initial(64, seed=1))


def test_bad_parameters_name_the_argument():
    with pytest.raises(ValueError, match="`N`"):
        physres.systems.get("lorenz96", N=3)
    with pytest.raises(ValueError, match="`F`"):
        physres.systems.get("lorenz96", F=float("nan"))

"""Langevin steppers: reproducibility, limits, and sampling against statistical mechanics."""

import numpy as np
import pytest
import torch
from scipy.integrate import quad

import physres
from physres.systems.chain import end_to_end, radius_of_gyration

IDEAL = dict(target=None, wca=False, k_angle=0.0, initial="extended")


def _chain(**kw):
    return physres.systems.get("bead_chain", **kw)


def _sample(stepper, x0, dt, t_burn, t_run, every):
    """Rollout; frames after the burn-in, every ``every`` time units: (batch, n_frames, ...)."""
    save = max(1, round(every / dt))
    n = round((t_burn + t_run) / dt)
    traj = physres.rollout(stepper, x0, dt, n - n % save, save_every=save)
    return traj[:, round(t_burn / (save * dt)) + 1 :]


def _mean_and_error(values):
    """Mean over chains and frames, and its standard error from the independent chains."""
    per_chain = values.mean(1)
    return float(per_chain.mean()), float(per_chain.std() / np.sqrt(len(per_chain)))


@pytest.mark.parametrize("name", ["euler_maruyama", "baoab"])
def test_seeded_and_reproducible(name):
    dyn = "underdamped" if name == "baoab" else "overdamped"
    chain = _chain(n_beads=8, temperature=0.7, dynamics=dyn)
    x0 = chain.sample_initial(3)
    a = physres.steppers.get(name, chain.rhs, seed=5)
    first = physres.rollout(a, x0, 1e-3, 20)
    a.reseed()
    assert torch.equal(first, physres.rollout(a, x0, 1e-3, 20))
    b = physres.steppers.get(name, chain.rhs, seed=5)
    assert torch.equal(first, physres.rollout(b, x0, 1e-3, 20))
    c = physres.steppers.get(name, chain.rhs, seed=6)
    assert not torch.equal(first, physres.rollout(c, x0, 1e-3, 20))
    g = torch.Generator().manual_seed(5)
    d = physres.steppers.get(name, chain.rhs, generator=g)
    assert torch.equal(first, physres.rollout(d, x0, 1e-3, 20))
    assert a.temperature == 0.7 and a.friction == 1.0 and not a.general


def test_euler_maruyama_at_zero_temperature_is_the_euler_step():
    chain = _chain(n_beads=10, staples=[(0, 9)])
    x0 = chain.sample_initial(2)
    em = physres.rollout(physres.steppers.get("euler_maruyama", chain.rhs), x0, 1e-3, 50)
    eu = physres.rollout(physres.steppers.get("euler", chain.rhs), x0, 1e-3, 50)
    assert torch.allclose(em, eu, rtol=1e-14, atol=1e-14)


def test_baoab_without_friction_is_velocity_verlet():
    chain = _chain(n_beads=10, staples=[(0, 9)], dynamics="underdamped", friction=1e-14)
    x0 = chain.sample_initial(2)
    x0[:, 1] = 0.3 * torch.randn_like(x0[:, 1])
    ours = physres.rollout(physres.steppers.get("baoab", chain.rhs), x0, 2e-3, 200)
    verlet = physres.rollout(physres.steppers.get("leapfrog", chain.rhs), x0, 2e-3, 200)
    assert float((ours - verlet).abs().max()) < 1e-10


def test_baoab_reuses_the_last_force():
    chain = _chain(n_beads=8, dynamics="underdamped", temperature=1.0)
    step = physres.steppers.get("baoab", chain.rhs)
    physres.rollout(step, chain.sample_initial(2), 1e-3, 10)
    assert step.nfev == 11  # one force per step, plus the first


@pytest.mark.parametrize(
    "n, n_chains, t_run",
    [
        (8, 200, 40.0),
        pytest.param(24, 400, 400.0, marks=pytest.mark.slow),
    ],
)
def test_gaussian_chain_statistics(n, n_chains, t_run):
    """Rouse chain (zero-length springs, bonds only): ⟨R²⟩ = (N−1)b², ⟨Rg²⟩ = b²(N²−1)/(6N),
    ⟨b²⟩ = 3kT/k (Doi & Edwards 1986, §2.1, §4.1), from an extended start."""
    k, kt = 3.0, 1.0
    chain = _chain(
        n_beads=n, bond_length=0.0, k_bond=k, temperature=kt, dynamics="underdamped", **IDEAL
    )
    step = physres.steppers.get("baoab", chain.rhs, seed=1)
    t_burn = 10.0 * (n / 8) ** 2  # a few Rouse times
    traj = _sample(step, chain.sample_initial(n_chains, seed=1), 0.05, t_burn, t_run, 1.0)
    q = traj[:, :, 0]
    b2 = 3 * kt / k
    mean, err = _mean_and_error(end_to_end(q) ** 2)
    assert abs(mean - (n - 1) * b2) < 4 * err, (mean, err)
    mean, err = _mean_and_error(radius_of_gyration(q) ** 2)
    assert abs(mean - b2 * (n * n - 1) / (6 * n)) < 4 * err, (mean, err)
    assert err < 0.05 * b2 * (n * n - 1) / (6 * n)  # and the test has teeth


def test_stiff_spring_chain_overdamped():
    """Bonds only, rest length 1: bond vectors are independent and isotropic, so
    ⟨R²⟩ = (N−1)⟨b²⟩ with ⟨b²⟩ = ∫r⁴e^{−u/kT}dr / ∫r²e^{−u/kT}dr (quadrature)."""
    n, k, kt = 6, 100.0, 1.0
    chain = _chain(n_beads=n, k_bond=k, temperature=kt, **IDEAL)

    def moment(p):
        return quad(lambda r: r**p * np.exp(-0.5 * k * (r - 1.0) ** 2 / kt), 0.0, 3.0)[0]

    b2 = moment(4) / moment(2)
    step = physres.steppers.get("euler_maruyama", chain.rhs, seed=2)
    traj = _sample(step, chain.sample_initial(200, seed=2), 2e-3, 4.0, 12.0, 0.5)
    mean, err = _mean_and_error(end_to_end(traj) ** 2)
    bias = (n - 1) * 0.1 * 3 * kt / k  # Euler–Maruyama: bond variance off by ≈ k·dt/2γ
    assert abs(mean - (n - 1) * b2) < 4 * err + bias, (mean, err)
    assert err < 0.05 * (n - 1) * b2


def test_baoab_equipartition_on_a_folding_chain():
    """Kinetic temperature ⟨p²⟩ = kT per degree of freedom and configurational temperature
    ⟨|∇U|²⟩/⟨ΔU⟩ = kT (Rugh 1997) on the nonlinear Gō chain."""
    kt, gamma = 0.3, 2.0
    kw = dict(n_beads=10, staples=[(0, 9)], temperature=kt, friction=gamma)
    chain = _chain(dynamics="underdamped", **kw)
    step = physres.steppers.get("baoab", chain.rhs, seed=3)
    x0 = chain.sample_initial(100, seed=3)
    x0[:, 0] = chain.native  # start folded, momenta from Maxwell–Boltzmann
    traj = _sample(step, x0, 2e-3, 1.0, 4.0, 0.25)
    mean, err = _mean_and_error((traj[:, :, 1] ** 2).mean((-1, -2)))
    assert abs(mean - kt) < 4 * err + 0.01 * kt, (mean, err)
    positions = _chain(**kw)
    q = traj[::4, :, 0].reshape(-1, 10, 3)
    force = positions.force(q)
    laplacian = -gamma * positions.jacobian(0.0, q).diagonal(dim1=1, dim2=2).sum(-1)
    conf = float((force**2).sum((-1, -2)).mean() / laplacian.mean())
    assert conf == pytest.approx(kt, rel=0.05)


def _rg_spread(staples, seed, n_chains=60, t_run=12.0):
    chain = _chain(
        n_beads=16,
        target=None,
        k_angle=0.0,
        temperature=1.0,
        dynamics="underdamped",
        staples=staples,
    )
    step = physres.steppers.get("baoab", chain.rhs, seed=seed)
    traj = _sample(step, chain.sample_initial(n_chains, seed=seed), 0.01, 3.0, t_run, 0.5)
    rg = radius_of_gyration(traj[:, :, 0])  # (chains, frames)
    blocks = torch.stack([b.reshape(-1).std() for b in rg.chunk(10)])
    return float(rg.std()), float(blocks.std() / np.sqrt(len(blocks))), float(rg.mean())


@pytest.mark.parametrize(
    "n_chains, t_run", [(60, 12.0), pytest.param(200, 100.0, marks=pytest.mark.slow)]
)
def test_staples_narrow_the_rg_distribution(n_chains, t_run):
    free, free_err, free_mean = _rg_spread([], 4, n_chains, t_run)
    stapled, stapled_err, stapled_mean = _rg_spread([(1, 14, 20.0, 1.0)], 4, n_chains, t_run)
    assert stapled + 4 * (free_err + stapled_err) < free, (free, stapled)
    assert stapled_mean < free_mean


@pytest.mark.parametrize("name", ["euler_maruyama", "baoab"])
def test_bad_options(name):
    chain = _chain(n_beads=8)
    with pytest.raises(ValueError, match="`temperature`"):
        physres.steppers.get(name, chain.rhs, temperature=-1.0)
    with pytest.raises(ValueError, match="`friction`"):
        physres.steppers.get(name, chain.rhs, friction=0.0)
    with pytest.raises(TypeError, match="`generator`"):
        physres.steppers.get(name, chain.rhs, generator=3)
    with pytest.raises(ValueError, match="`seed`"):
        physres.steppers.get(name, chain.rhs, seed=-1)


def test_baoab_needs_position_momentum_halves():
    step = physres.steppers.get("baoab", lambda t, x: -x, temperature=1.0)
    with pytest.raises(ValueError, match="splits into"):
        step(torch.zeros(2, 3), 0.0, 0.1)

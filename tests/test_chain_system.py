"""bead_chain: analytic forces, the native minimum, gradient flow against scipy, bad input."""

import json

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

import physres
from physres.systems.chain import potential

CONFIGS = {
    "hairpin": dict(n_beads=20, staples=[(2, 17)]),
    "helix_torsion": dict(n_beads=16, target="helix", k_torsion=2.0, staples=[(1, 14, 5.0, 3.0)]),
    "fene_homopolymer": dict(n_beads=12, target=None, bond="fene", staples=[(0, 11)]),
    "underdamped": dict(
        n_beads=10, target="hairpin", k_torsion=1.0, dynamics="underdamped", temperature=0.5
    ),
}


def _near_native(chain, n, scale=0.1, seed=0):
    g = torch.Generator().manual_seed(seed)
    if chain.native is None:
        return chain.sample_initial(n, seed=seed)
    return chain.native + scale * torch.randn(n, *chain.native.shape, generator=g)


@pytest.mark.parametrize("name", CONFIGS)
def test_force_is_minus_autograd_gradient(name):
    chain = physres.systems.get("bead_chain", **CONFIGS[name])
    x = _near_native(chain, 5).requires_grad_(True)
    energy, force = chain.energy_force(x)
    (grad,) = torch.autograd.grad(energy.sum(), x)
    scale = max(1.0, float(force.detach().abs().max()))
    assert float((force + grad).detach().abs().max()) < 1e-10 * scale
    assert energy.shape == (5,)


@pytest.mark.parametrize("term", ["fene", "torsion", "bending", "wca", "go"])
def test_each_term_against_autograd(term):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 9, 3, generator=g).cumsum(1).requires_grad_(True)
    i = torch.arange(9)
    calls = {
        "fene": lambda: potential.fene_pairs(
            x,
            i[:-1],
            i[1:],
            30.0,
            torch.linalg.vector_norm((x[0, 1:] - x[0, :-1]).detach(), dim=-1) * 1.05,
            10.0,
        ),
        "torsion": lambda: potential.torsion(x, i[:-3], 1.5, torch.linspace(-3, 3, 6)),
        "bending": lambda: potential.bending(x, i[1:-1], 4.0, torch.linspace(-1, 1, 7)),
        "wca": lambda: potential.wca_pairs(x, *torch.triu_indices(9, 9, 2), 1.0, 2.5),
        "go": lambda: potential.go_pairs(x, *torch.triu_indices(9, 9, 3), 1.0, 1.5),
    }
    energy, force = calls[term]()
    (grad,) = torch.autograd.grad(energy.sum(), x)
    force = force.detach()
    assert float((force + grad).abs().max()) < 1e-10 * max(1.0, float(force.abs().max()))


def test_dihedral_sign_convention():
    # IUPAC: looking along b2, a clockwise turn from bead 0 to bead 3 is positive.
    x = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 1.0]]])
    assert float(potential.dihedral(x, torch.tensor([0]))[0, 0]) == pytest.approx(np.pi / 2)


@pytest.mark.parametrize("target", ["hairpin", "helix"])
def test_native_structure_is_a_minimum(target):
    chain = physres.systems.get("bead_chain", n_beads=24, target=target, k_torsion=1.0)
    native = chain.native.unsqueeze(0)
    energy, force = chain.energy_force(native)
    assert float(force.abs().max()) < 1e-10
    # every native contact sits at its Gō minimum −ε; all other terms vanish there
    assert float(energy) == pytest.approx(-len(chain.contacts), abs=1e-10)
    assert float(chain.jacobian(0.0, native).reshape(72, 72).diagonal().max()) <= 1e-8
    assert float(chain.energy(_near_native(chain, 8, scale=0.02)).min()) > float(energy)


def test_builtin_targets_have_unit_bonds_and_contacts():
    for target in ("hairpin", "helix"):
        chain = physres.systems.get("bead_chain", n_beads=30, target=target)
        bonds = torch.linalg.vector_norm(chain.native[1:] - chain.native[:-1], dim=-1)
        assert torch.allclose(bonds, torch.ones(29), atol=1e-12)
        sep = chain.contacts[:, 1] - chain.contacts[:, 0]
        assert len(chain.contacts) > 10 and int(sep.min()) >= 3
    helix = physres.systems.get("bead_chain", n_beads=30, target="helix")
    pairs = {tuple(p) for p in helix.contacts.tolist()}
    assert {(i, i + 3) for i in range(27)} | {(i, i + 4) for i in range(26)} == pairs


def test_staple_adds_exactly_its_spring():
    plain = physres.systems.get("bead_chain", n_beads=16)
    stapled = physres.systems.get("bead_chain", n_beads=16, staples=[(2, 13, 7.0, 1.5)])
    x = plain.sample_initial(4, seed=3)
    r = torch.linalg.vector_norm(x[:, 13] - x[:, 2], dim=-1)
    expected = plain.energy(x) + 0.5 * 7.0 * (r - 1.5) ** 2
    assert torch.allclose(stapled.energy(x), expected, rtol=1e-13, atol=1e-12)


def test_default_staple_rest_length_is_native_distance():
    chain = physres.systems.get("bead_chain", n_beads=32, staples=[(3, 28)], temperature=0.0)
    i, j, k, r0 = chain.staples[0]
    assert (i, j, k) == (3, 28, 20.0)
    assert r0 == pytest.approx(float(torch.linalg.vector_norm(chain.native[28] - chain.native[3])))


def test_params_round_trip_through_json():
    coords = physres.systems.chain.helix(10) * 1.1
    chain = physres.systems.get("bead_chain", n_beads=10, target=coords, staples=[(0, 9)])
    again = physres.systems.get("bead_chain", **json.loads(json.dumps(chain.params)))
    x = chain.sample_initial(3)
    assert torch.equal(chain.energy(x), again.energy(x))
    assert again.staples == chain.staples


def test_jacobian_matches_finite_differences():
    chain = physres.systems.get("bead_chain", n_beads=8, staples=[(0, 7)], k_torsion=1.0)
    x = _near_native(chain, 2, scale=0.1)
    jac = chain.jacobian(0.0, x)
    h = 1e-6
    flat = x.reshape(2, -1)
    fd = torch.stack(
        [
            (
                chain.rhs(0.0, (flat + h * e).reshape(x.shape))
                - chain.rhs(0.0, (flat - h * e).reshape(x.shape))
            ).reshape(2, -1)
            / (2 * h)
            for e in torch.eye(flat.shape[1])
        ],
        dim=-1,
    )
    assert torch.allclose(jac, fd, rtol=1e-6, atol=1e-5)
    assert torch.allclose(jac, jac.transpose(1, 2), atol=1e-9)  # −Hessian/γ is symmetric


def _scipy(chain, x0, t_eval, method="DOP853"):
    out = []
    jac = {"jac": chain.numpy_jacobian} if method == "LSODA" else {}
    for y0 in x0.reshape(x0.shape[0], -1).numpy():
        sol = solve_ivp(
            chain.numpy_rhs,
            (t_eval[0], t_eval[-1]),
            y0,
            method=method,
            t_eval=t_eval,
            rtol=1e-11,
            atol=1e-12,
            **jac,
        )
        assert sol.success
        out.append(sol.y.T)
    return np.stack(out).reshape(x0.shape[0], len(t_eval), *chain.state_shape)


def test_energy_never_rises_along_gradient_flow():
    chain = physres.systems.get("bead_chain", n_beads=9, staples=[(1, 8)], initial="extended")
    x0 = chain.sample_initial(2, seed=4)
    t = np.linspace(0.0, 1.0, 201)
    traj = torch.from_numpy(_scipy(chain, x0, t, method="LSODA"))
    energy = chain.energy(traj.reshape(-1, *chain.state_shape)).reshape(2, -1)
    rises = energy[:, 1:] - energy[:, :-1]
    assert float(rises.max()) <= 1e-9 * float(energy.abs().max())
    assert float((energy[:, 0] - energy[:, -1]).min()) > 1.0  # and it does fall


@pytest.mark.parametrize("dynamics", ["overdamped", "underdamped"])
def test_rk4_rollout_matches_scipy(dynamics):
    chain = physres.systems.get(
        "bead_chain", n_beads=10, staples=[(0, 9)], k_torsion=1.0, dynamics=dynamics
    )
    x0 = chain.sample_initial(1, seed=1)
    t = np.linspace(0.0, 0.2, 5)
    ref = torch.from_numpy(_scipy(chain, x0, t))
    step = physres.steppers.get("rk4", chain.rhs)
    traj = physres.rollout(step, x0, dt=5e-4, n_steps=400, save_every=100)
    assert float((traj - ref).abs().max()) < 1e-7


def test_reference_solve_agrees_with_scipy():
    reference = pytest.importorskip("physres.reference")
    chain = physres.systems.get("bead_chain", n_beads=8, staples=[(0, 7)])
    x0 = chain.sample_initial(1, seed=2)
    t = np.linspace(0.0, 0.2, 3)
    ours = reference.solve(chain, x0, t, method="DOP853", rtol=1e-11, atol=1e-12)
    assert np.abs(ours - _scipy(chain, x0, t)).max() < 1e-8


def test_sample_initial():
    ext = physres.systems.get("bead_chain", n_beads=20, initial="extended")
    x = ext.sample_initial(3, seed=5)
    assert x.shape == (3, 20, 3) and x.dtype == torch.float64
    assert torch.equal(x, ext.sample_initial(3, seed=5))
    assert not torch.equal(x, ext.sample_initial(3, seed=6))
    assert torch.allclose(x.mean(1), torch.zeros(3, 3), atol=1e-12)
    assert float(physres.systems.chain.end_to_end(x).min()) > 15.0  # nearly straight
    coil = physres.systems.get("bead_chain", n_beads=20)
    y = coil.sample_initial(4, seed=0)
    bonds = torch.linalg.vector_norm(y[:, 1:] - y[:, :-1], dim=-1)
    assert torch.allclose(bonds, coil._bond_r0.expand(4, -1), atol=1e-12)
    d = physres.systems.chain.distances(y)
    far = torch.triu(torch.ones(20, 20, dtype=torch.bool), diagonal=2)
    assert float(d[:, far].min()) > 0.9  # self-avoiding (a few redraws may fall short)
    hot = physres.systems.get("bead_chain", n_beads=8, dynamics="underdamped", temperature=2.0)
    z = hot.sample_initial(2000, seed=0)
    assert z.shape == (2000, 2, 8, 3)
    assert float(z[:, 1].var()) == pytest.approx(2.0, rel=0.03)  # Maxwell–Boltzmann


def test_invariants():
    chain = physres.systems.get("bead_chain", n_beads=12, staples=[(0, 11)])
    x = chain.sample_initial(3)
    inv = chain.invariants(x)
    assert set(inv) == {"energy", "rg", "end_to_end", "q", "rmsd"}
    assert all(v.shape == (3,) for v in inv.values())
    assert torch.allclose(inv["energy"], chain.energy(x))
    homo = physres.systems.get("bead_chain", n_beads=12, target=None, dynamics="underdamped")
    z = homo.sample_initial(2)
    z[:, 1] = 1.0
    inv = homo.invariants(z)
    assert set(inv) == {"energy", "rg", "end_to_end"}
    assert torch.allclose(inv["energy"], homo.energy(z) + 0.5 * 12 * 3)


@pytest.mark.parametrize(
    "staples, match",
    [
        ([(3, 40)], r"`staples`.*out of range"),
        ([(-1, 10)], r"`staples`.*out of range"),
        ([(3, 4)], r"`staples`.*neighbouring"),
        ([(3, 5)], r"`staples`.*neighbouring"),
        ([(3, 28), (28, 3)], r"`staples`.*duplicate"),
        ([(3,)], r"`staples` entries must be"),
        ([(3, 28, 1.0)], r"`staples` entries must be"),
    ],
)
def test_bad_staples(staples, match):
    with pytest.raises(ValueError, match=match):
        physres.systems.get("bead_chain", n_beads=32, staples=staples)


def test_bad_input():
    with pytest.raises(TypeError, match="`staples` bead indices"):
        physres.systems.get("bead_chain", staples=[(1.0, 10)])
    with pytest.raises(ValueError, match="`temperature`"):
        physres.systems.get("bead_chain", temperature=-0.1)
    with pytest.raises(ValueError, match="`friction`"):
        physres.systems.get("bead_chain", friction=0.0)
    with pytest.raises(ValueError, match="`n_beads`"):
        physres.systems.get("bead_chain", n_beads=3)
    with pytest.raises(ValueError, match=r"`target`.*shape \(n_beads, 3\) = \(10, 3\)"):
        physres.systems.get("bead_chain", n_beads=10, target=np.zeros((9, 3)))
    with pytest.raises(ValueError, match="`target` must be one of"):
        physres.systems.get("bead_chain", target="sheet")
    with pytest.raises(ValueError, match="`target` has coincident"):
        physres.systems.get("bead_chain", n_beads=4, target=np.zeros((4, 3)))
    with pytest.raises(ValueError, match="`k_torsion`.*needs a `target`"):
        physres.systems.get("bead_chain", target=None, k_torsion=1.0)
    with pytest.raises(ValueError, match="`bond` must be one of"):
        physres.systems.get("bead_chain", bond="morse")
    chain = physres.systems.get("bead_chain", n_beads=10)
    with pytest.raises(ValueError, match=r"`x` must have shape \(batch, 10, 3\)"):
        chain.energy(torch.zeros(2, 9, 3))
    with pytest.raises(ValueError, match=r"`x` must have shape"):
        chain.energy(torch.zeros(10, 3))
    with pytest.raises(ValueError, match="need a `target`"):
        physres.systems.get("bead_chain", target=None).folding(torch.zeros(1, 32, 3))

"""bead_chain pair lists: the Verlet neighbour list gives the all-pairs energy and force to
round-off (random coils, folded chains, pairs at the cutoff, after rebuilds in a Langevin run)."""

import math

import pytest
import torch

import physres
from physres.systems.chain.neighbours import VerletList

RC = 2.0 ** (1.0 / 6.0)  # WCA cutoff for sigma = 1


def _pair(n_beads, method, **kw):
    kw = {"staples": [(1, n_beads - 2)], **kw}
    return physres.systems.get("bead_chain", n_beads=n_beads, pairs=method, **kw)


def _agree(a, b, x):
    ea, fa = a.energy_force(x)
    eb, fb = b.energy_force(x)
    scale = max(1.0, float(fa.abs().max()))
    assert float((ea - eb).abs().max()) < 1e-12 * max(1.0, float(ea.abs().max()))
    assert float((fa - fb).abs().max()) < 1e-12 * scale


def _compact(chain, n, seed):
    """Random coils squeezed to 0.6 of their size: many WCA pairs inside the cutoff."""
    x = chain.sample_initial(n, seed=seed)
    return 0.6 * x


@pytest.mark.parametrize("n_beads", [6, 13, 32, 80])
def test_verlet_equals_all_pairs_on_coils_and_folds(n_beads):
    verlet, full = _pair(n_beads, "verlet"), _pair(n_beads, "all")
    g = torch.Generator().manual_seed(n_beads)
    for x in (
        verlet.sample_initial(5, seed=1),
        _compact(verlet, 4, 2),
        verlet.native + 0.15 * torch.randn(3, n_beads, 3, generator=g, dtype=torch.float64),
    ):
        _agree(verlet, full, x)
    # compact coils really exercise the repulsion
    d = physres.systems.chain.distances(_compact(verlet, 4, 2))
    i, j = verlet._wca_i, verlet._wca_j
    assert int((d[:, i, j] < RC).sum()) > 0


def test_pairs_exactly_at_the_cutoff():
    n = 16
    verlet, full = _pair(n, "verlet"), _pair(n, "all")
    x = verlet.sample_initial(1, seed=3).repeat(6, 1, 1)
    # put bead 9 at distance rc·(1 + δ) from bead 2 along their line, δ from −1e-12 to 1e-12
    for k, delta in enumerate((-1e-12, -1e-15, 0.0, 1e-15, 1e-12, 0.3)):
        u = x[k, 9] - x[k, 2]
        x[k, 9] = x[k, 2] + RC * (1 + delta) * u / u.norm()
    _agree(verlet, full, x)
    e, _ = full.energy_force(x[:1])
    assert e.isfinite().all()


def test_verlet_energy_force_is_minus_autograd_gradient():
    chain = _pair(40, "verlet")
    x = _compact(chain, 3, 4).requires_grad_(True)
    energy, force = chain.energy_force(x)
    (grad,) = torch.autograd.grad(energy.sum(), x)
    force = force.detach()
    assert float((force + grad).abs().max()) < 1e-10 * max(1.0, float(force.abs().max()))


@pytest.mark.parametrize("method", ["verlet", "all"])
def test_force_only_path_matches_energy_force(method):
    chain = _pair(30, method, dynamics="underdamped", temperature=0.3)
    x = _compact(chain, 4, 5)[:, 0]
    # the fused force (one radial formula for staples, Gō and WCA) vs the per-term one
    fused, full = chain.conservative_force(x), chain.energy_force(x)[1]
    assert float((fused - full).abs().max()) <= 1e-13 * float(full.abs().max())
    x.requires_grad_(True)  # with a gradient to track: the per-term path itself
    assert torch.equal(chain.conservative_force(x), chain.energy_force(x)[1])


def test_same_langevin_trajectory_through_rebuilds():
    # BAOAB with the list and with all pairs: the same trajectory to round-off, while the list
    # is rebuilt many times; every frame's force agrees too.
    kw = dict(dynamics="underdamped", temperature=1.0, initial="coil")
    verlet, full = _pair(24, "verlet", skin=0.1, **kw), _pair(24, "all", **kw)
    x0 = verlet.sample_initial(3, seed=6)
    a = physres.rollout(
        physres.steppers.get("baoab", verlet.rhs, seed=2), x0, 2e-3, 400, save_every=20
    )
    b = physres.rollout(
        physres.steppers.get("baoab", full.rhs, seed=2), x0, 2e-3, 400, save_every=20
    )
    assert verlet._verlet.builds >= 5
    assert float((a - b).abs().max()) < 1e-9
    frames = a.flatten(0, 1)[:, 0]
    _agree(verlet, full, frames)


def test_list_holds_every_pair_within_reach_after_moves_below_half_skin():
    # Independent check of the skin criterion: move beads by up to (but below) skin/2 and the
    # stored list still contains every candidate pair now inside the cutoff.
    n, skin = 40, 0.3
    g = torch.Generator().manual_seed(7)
    x = 3.0 * torch.rand(2, n, 3, generator=g, dtype=torch.float64)
    candidates = torch.ones(n, n, dtype=torch.bool)
    nl = VerletList(candidates, RC, skin)
    nl.pairs(x)
    step = torch.randn(x.shape, generator=g, dtype=torch.float64)
    step = step / step.norm(dim=-1, keepdim=True) * (0.5 * skin * (1 - 1e-9))
    moved = x + step
    i, j = nl.pairs(moved)
    assert nl.builds == 1  # not rebuilt
    listed = set(zip(i.tolist(), j.tolist(), strict=True))
    d = torch.cdist(moved, moved)
    b, bi, bj = torch.nonzero(torch.triu(d < RC, diagonal=1), as_tuple=True)
    need = set(zip((b * n + bi).tolist(), (b * n + bj).tolist(), strict=True))
    assert need and need <= listed
    # moving one bead past skin/2 forces a rebuild
    moved[0, 0] += 0.5 * skin * 1.01 * torch.tensor([1.0, 0, 0], dtype=torch.float64)
    nl.pairs(moved)
    assert nl.builds == 2


def test_auto_picks_by_length_and_bad_options():
    from physres.systems.chain.system import AUTO_VERLET_BEADS

    assert _pair(max(4, AUTO_VERLET_BEADS - 1), "auto").pair_method == "all"
    assert _pair(AUTO_VERLET_BEADS, "auto").pair_method == "verlet"
    with pytest.raises(ValueError, match="`pairs`"):
        _pair(10, "cells")
    with pytest.raises(ValueError, match="`skin`"):
        _pair(10, "verlet", skin=0.0)
    assert math.isclose(_pair(30, "verlet", skin=0.25)._verlet.skin, 0.25)


@pytest.mark.parametrize(
    "kw",
    [
        {"pairs": "all"},
        {"pairs": "verlet"},
        {"pairs": "all", "k_torsion": 2.0},
        {"pairs": "verlet", "staples": [], "sigma": 0.9},
        {"pairs": "all", "epsilon": 0.0},
        {"pairs": "verlet", "wca": False},
        {"pairs": "all", "k_angle": 0.0},
        {"pairs": "verlet", "bond": "fene"},
    ],
)
def test_fused_force_matches_the_per_term_force(kw):
    # and the -grad of the energy by autograd; pairs straddle the WCA cutoff (the fused
    # formula cuts by min(w, 0), where the LJ force changes sign)
    chain = physres.systems.get("bead_chain", n_beads=24, **{"staples": [(2, 20)], **kw})
    x = _compact(chain, 3, 11)
    u = x[:, 9] - x[:, 2]
    for k, delta in enumerate((-1e-9, 0.0, 1e-9)):
        x[k, 9] = x[k, 2] + RC * (chain.params["sigma"] + delta) * u[k] / u[k].norm()
    fused = chain.conservative_force(x)
    xg = x.clone().requires_grad_(True)
    energy, full = chain.energy_force(xg)
    (grad,) = torch.autograd.grad(energy.sum(), xg)
    full = full.detach()
    scale = float(full.abs().max())
    assert float((fused - full).abs().max()) <= 1e-13 * scale
    assert float((fused + grad).abs().max()) <= 1e-11 * scale

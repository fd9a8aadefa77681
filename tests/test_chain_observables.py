"""Chain observables against closed forms and scipy's optimal rotation."""

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

import physres
from physres.systems import chain as ch


def _rod(n):
    x = torch.zeros(1, n, 3)
    x[0, :, 0] = torch.arange(n, dtype=torch.float64)
    return x


def test_radius_of_gyration_and_end_to_end_of_a_rod():
    n = 11
    assert float(ch.radius_of_gyration(_rod(n))) == pytest.approx(np.sqrt((n * n - 1) / 12))
    assert float(ch.end_to_end(_rod(n))) == pytest.approx(n - 1)
    ring = torch.stack(
        [
            torch.cos(torch.linspace(0, 2 * np.pi, 13)[:-1]),
            torch.sin(torch.linspace(0, 2 * np.pi, 13)[:-1]),
            torch.zeros(12),
        ],
        dim=-1,
    )
    assert float(ch.radius_of_gyration(3.0 * ring)) == pytest.approx(3.0)


def test_kabsch_rmsd_matches_scipy_align_vectors():
    rng = np.random.default_rng(0)
    ref = ch.helix(15)
    for _ in range(5):
        x = ref + 0.3 * rng.normal(size=ref.shape)
        a, b = x - x.mean(0), ref - ref.mean(0)
        _, rssd = Rotation.align_vectors(b, a)
        ours = ch.kabsch_rmsd(torch.from_numpy(x)[None], torch.from_numpy(ref))
        assert float(ours[0]) == pytest.approx(rssd / np.sqrt(len(x)), rel=1e-10)


def test_kabsch_rmsd_is_zero_for_rigid_motions_but_not_mirror_images():
    ref = torch.from_numpy(ch.helix(20))
    rot = torch.from_numpy(Rotation.random(4, random_state=1).as_matrix())
    moved = ref @ rot.transpose(1, 2) + torch.randn(4, 1, 3)
    assert float(ch.kabsch_rmsd(moved, ref).max()) < 1e-7
    mirror = ref * torch.tensor([1.0, 1.0, -1.0])
    assert float(ch.kabsch_rmsd(mirror[None], ref)) > 0.2  # a left-handed helix is not native
    np_out = ch.kabsch_rmsd(moved.numpy(), ref.numpy())
    assert isinstance(np_out, np.ndarray) and np_out.shape == (4,)


def test_fraction_native_contacts():
    chain = physres.systems.get("bead_chain", n_beads=20, target="hairpin")
    native = chain.native[None]
    assert float(chain.folding(native)["q"]) == 1.0
    ext = physres.systems.get("bead_chain", n_beads=20, initial="extended").sample_initial(3)
    assert float(chain.folding(ext)["q"].max()) == 0.0
    # stretch exactly one contact beyond the tolerance: Q drops by 1/n_contacts
    r = chain.native_distances.clone()
    r[0] = r[0] / 1.3
    q = ch.fraction_native_contacts(native, chain.contacts, r, tolerance=1.2)
    assert float(q) == pytest.approx(1.0 - 1.0 / len(chain.contacts))
    with pytest.raises(ValueError, match="`contacts` is empty"):
        ch.fraction_native_contacts(native, np.zeros((0, 2)), np.zeros(0))


def test_contact_map():
    chain = physres.systems.get("bead_chain", n_beads=16, target="hairpin")
    cmap = ch.contact_map(chain.native[None], cutoff=chain.params["contact_cutoff"])[0]
    assert torch.equal(cmap, cmap.T)
    pairs = {tuple(p) for p in torch.nonzero(torch.triu(cmap)).tolist()}
    assert pairs == {tuple(p) for p in chain.contacts.tolist()}
    assert float(ch.contact_map(_rod(8)).sum()) == 0.0


def test_bad_shapes():
    with pytest.raises(ValueError, match=r"`x` must have shape \(\.\.\., n_beads, 3\)"):
        ch.radius_of_gyration(torch.zeros(2, 5, 2))
    with pytest.raises(ValueError, match="`reference` has 6 beads"):
        ch.kabsch_rmsd(torch.zeros(1, 5, 3), torch.zeros(6, 3))
    with pytest.raises(TypeError, match="`x` must be a torch.Tensor or numpy array"):
        ch.end_to_end([[0.0, 0.0, 0.0]])

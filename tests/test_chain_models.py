"""Chain-graph emulator: symmetry, staple edges, artifacts, and that it learns."""

import h5py
import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

import physres
from physres.models import ChainGraphEmulator


def _model(**kw):
    torch.manual_seed(0)
    options = dict(
        state_shape=(10, 3), staples=[(1, 8)], width=8, depth=2, dt=0.1, dtype=torch.float64
    )
    return ChainGraphEmulator(**{**options, **kw})


def test_rotation_equivariant_and_translation_invariant():
    x = physres.systems.get("bead_chain", n_beads=10).sample_initial(4)
    rot = torch.from_numpy(Rotation.random(random_state=3).as_matrix())
    shift = torch.tensor([1.0, -2.0, 0.5])
    for cutoff in (None, 1.6):
        m = _model(cutoff=cutoff)
        with torch.no_grad():
            for p in m.parameters():  # leave the near-identity start so the test has teeth
                p.add_(0.3 * torch.randn_like(p))
            moved = m(x @ rot.T + shift, 0.0, 0.1)
            assert float((moved - (m(x, 0.0, 0.1) @ rot.T + shift)).abs().max()) < 1e-12
            assert float((m(x, 0.0, 0.1) - x).abs().max()) > 1e-3


def test_staple_edges_carry_information_between_distant_beads():
    """Moving bead 8 changes bead 1's update only through the staple edge (depth 2 cannot
    reach 7 beads along the chain)."""
    x = physres.systems.get("bead_chain", n_beads=10).sample_initial(1)
    y = x.clone()
    y[0, 8] += 0.5
    for use_staples, expect_change in ((True, True), (False, False)):
        m = _model(use_staples=use_staples)
        with torch.no_grad():
            d = float((m(x, 0.0, 0.1)[0, 1] - m(y, 0.0, 0.1)[0, 1]).abs().max())
        assert (d > 1e-9) is expect_change, d


def test_save_load_and_noise():
    m = _model(temperature=0.5, seed=4).eval()
    x = physres.systems.get("bead_chain", n_beads=10).sample_initial(2)
    a = m(x, 0.0, 0.1)
    m.reseed()
    assert torch.equal(a, m(x, 0.0, 0.1))
    m.temperature = 0.0
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        physres.save(m, f"{d}/m.pt")
        loaded = physres.load(f"{d}/m.pt")
    loaded.temperature = 0.0
    assert torch.equal(loaded(x, 0.0, 0.1), m(x, 0.0, 0.1))


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"`state_shape` must be \(n_beads, 3\)"):
        ChainGraphEmulator(state_shape=(10, 2))
    with pytest.raises(ValueError, match="`staples` entry"):
        ChainGraphEmulator(state_shape=(10, 3), staples=[(1, 12)])
    with pytest.raises(ValueError, match="`dt`"):
        _model()(torch.zeros(1, 10, 3), 0.0, 0.2)


def test_learns_a_chain_flow_from_hdf5(tmp_path):
    system = physres.systems.get("bead_chain", n_beads=8, target=None, staples=[(0, 7, 10.0, 1.0)])
    path = physres.data.generate(
        system,
        tmp_path / "flow.h5",
        n_traj=10,
        t_end=0.4,
        dt=2e-3,
        dt_save=0.02,
        stepper="rk4",
        progress=False,
    )
    with physres.data.open(path) as f:
        assert f.attrs["reference_method"] == "rk4" and f.states.shape == (10, 21, 8, 3)
        states = torch.from_numpy(np.asarray(f.states[:]))
    assert torch.allclose(states[:, 0], system.sample_initial(10, seed=0))
    torch.manual_seed(0)
    model = ChainGraphEmulator(state_shape=(8, 3), staples=[(0, 7)], width=16, depth=2)
    cfg = physres.training.TrainConfig(
        epochs=25, batch_size=32, lr=1e-2, progress=False, patience=None, val_every=25
    )
    result = physres.training.fit(model, path, cfg)
    assert result.losses[-1] < 0.5 * result.losses[0]


def test_langevin_files_are_written_by_data_generate(tmp_path):
    system = physres.systems.get("bead_chain", n_beads=8, temperature=0.5)
    path = physres.data.generate(
        system,
        tmp_path / "hot.h5",
        n_traj=3,
        t_end=0.1,
        dt=1e-3,
        dt_save=0.01,
        seed=1,
        progress=False,
    )
    again = physres.data.generate(
        system,
        tmp_path / "hot2.h5",
        n_traj=3,
        t_end=0.1,
        dt=1e-3,
        dt_save=0.01,
        seed=1,
        progress=False,
    )
    run = physres.systems.chain.trajectories(
        system, 3, t_end=0.1, dt=1e-3, dt_save=0.01, seed=1, progress=False
    )
    with physres.data.open(path) as f, physres.data.open(again) as g:
        assert np.array_equal(f.states[:], g.states[:])  # seeded
        assert np.array_equal(f.states[:], run.states.numpy())  # the simulator's arrays
        np.testing.assert_array_equal(f.t, run.t)
        assert f.attrs["reference_method"] == "euler_maruyama" and f.attrs["dt"] == 1e-3
        assert f.attrs["rtol"] == 0 and f.attrs["atol"] == 0 and f.attrs["seed"] == 1
        assert set(f.invariants) == {"energy", "rg", "end_to_end", "q", "rmsd"}
        energy = system.invariants(run.states[1])["energy"].numpy()
        np.testing.assert_allclose(f.invariants["energy"][1], energy, rtol=1e-13)
        assert f.stats["nfev"][0] == run.nfev == 100  # one evaluation per Euler–Maruyama step
        assert f.make_system().params == system.params
    with pytest.raises(ValueError, match="`stepper` 'rk4' is deterministic"):
        physres.data.generate(system, tmp_path / "x.h5", stepper="rk4")
    with pytest.raises(ValueError, match="`dt_save`.*multiple of `dt`"):
        physres.data.generate(system, tmp_path / "x.h5", dt=3e-3, dt_save=0.01)
    with pytest.raises(ValueError, match="`method` apply to scipy references"):
        physres.data.generate(system, tmp_path / "x.h5", method="RK45")
    with pytest.raises(ValueError, match="available for bead_chain systems"):
        physres.data.generate("harmonic_oscillator", tmp_path / "x.h5", stepper="rk4")
    assert not (tmp_path / "x.h5").exists()


def test_chain_files_have_the_layout_of_scipy_files(tmp_path):
    """Fixed-step and scipy references of the same gradient flow: one writer, one layout, and
    states that agree to the fixed step's accuracy."""
    system = physres.systems.get("bead_chain", n_beads=6, target=None, staples=[(0, 5, 10.0, 1.0)])
    kw = dict(n_traj=2, t_end=0.2, dt_save=0.02, seed=4, progress=False)
    fixed = physres.data.generate(system, tmp_path / "rk4.h5", dt=1e-4, stepper="rk4", **kw)
    scipy = physres.data.generate(
        system, tmp_path / "scipy.h5", method="DOP853", rtol=1e-11, atol=1e-12, **kw
    )
    with physres.data.open(fixed) as f, physres.data.open(scipy) as g:
        with h5py.File(f.path) as a, h5py.File(g.path) as b:
            assert set(a.attrs) == set(b.attrs) | {"dt"}

            def names(h):
                out = set()
                h.visit(out.add)
                return out

            assert names(a) == names(b)
        np.testing.assert_allclose(f.states[:], g.states[:], rtol=0, atol=1e-9)


def test_cli_generates_a_langevin_file(tmp_path):
    from physres.cli import main

    out = tmp_path / "hot.h5"
    code = main(
        [
            "generate",
            "bead_chain",
            "--out",
            str(out),
            "--n-traj",
            "2",
            "--t-end",
            "0.05",
            "--dt-save",
            "0.01",
            "--dt",
            "0.001",
            "--param",
            "n_beads=6",
            "--param",
            "temperature=0.3",
            "--no-progress",
        ]
    )
    assert code == 0
    with physres.data.open(out) as f:
        assert f.attrs["reference_method"] == "euler_maruyama" and f.states.shape == (2, 6, 6, 3)


def _force_model(**kw):
    torch.manual_seed(0)
    options = dict(state_shape=(10, 3), staples=[(1, 8)], width=8, dt=0.1, dtype=torch.float64)
    m = physres.models.ChainForceEmulator(**{**options, **kw})
    with torch.no_grad():  # leave the near-identity start so the tests have teeth
        for p in m.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return m


def test_force_emulator_symmetries_and_centre_of_mass():
    x = physres.systems.get("bead_chain", n_beads=10).sample_initial(4)
    rot = torch.from_numpy(Rotation.random(random_state=5).as_matrix())
    shift = torch.tensor([0.5, 2.0, -1.0])
    for cutoff in (None, 2.0):
        m = _force_model(cutoff=cutoff)
        with torch.no_grad():
            y = m(x, 0.0, 0.1)
            scale = 1.0 + float(y.abs().max())  # round-off relative to the step's size
            assert (
                float((m(x @ rot.T + shift, 0.0, 0.1) - (y @ rot.T + shift)).abs().max())
                < 1e-13 * scale
            )
            assert float((y - x).abs().max()) > 1e-3
            # equal and opposite pair forces: the centre of mass does not move
            assert float((y.mean(1) - x.mean(1)).abs().max()) < 1e-14 * scale


def _gentle(m, factor=1e-2):
    """``m`` with its pair and bending laws scaled by ``factor``: the random laws of
    ``_force_model`` move a bead by ~10² per step, which would bring far pairs within the cutoff;
    scaled, a bead moves by ~0.05."""
    with torch.no_grad():
        for p in (m.head[-1].weight, m.head[-1].bias, m.table):
            p.mul_(factor)
        for p in (m.angle_head[-1].weight, m.angle_head[-1].bias, m.angle_table):
            p.mul_(factor)
    return m


def test_force_emulator_far_pairs_switch_off_at_the_cutoff():
    """Beads of a (slightly bent) rod 3 or more apart are beyond the cutoff 2.5, and each
    sub-step couples a bead to those within 2 along the chain (bonds, next neighbours, the
    bending terms at i ± 1), so after 3 sub-steps bead 0's step depends on beads 0 … 6 only:
    the Jacobian blocks d step_0 / d x_j are zero for j = 7, 8, 9 (autograd) and non-zero at
    j = 6, and moving bead 9 changes bead 0's step by round-off at most. A staple (0, 9)
    couples them."""
    x = torch.zeros(1, 10, 3, dtype=torch.float64)
    x[0, :, 0] = torch.arange(10.0)
    x[0, :, 1] = 0.05 * torch.arange(10.0) ** 2  # bent a little, so the bending terms act
    y = x.clone()
    y[0, 9] += torch.tensor([0.3, -0.2, 0.1], dtype=torch.float64)

    def blocks(m):
        """max |d step_0 / d x_j| per bead j, by autograd."""
        jac = torch.autograd.functional.jacobian(lambda z: m(z, 0.0, 0.1)[0, 0], x)
        return jac[:, 0].abs().amax(dim=(0, 2))  # (10,)

    m = _gentle(_force_model(cutoff=2.5, substeps=3, use_staples=False))
    with torch.no_grad():
        a, b = m(x, 0.0, 0.1)[0, 0], m(y, 0.0, 0.1)[0, 0]
        assert 1e-3 < float((m(x, 0.0, 0.1) - x).abs().max()) < 0.25  # far pairs stay far
    scale = 1.0 + float(a.abs().max())  # round-off relative to the step's size
    assert float((a - b).abs().max()) < 1e-13 * scale
    jac = blocks(m)
    assert float(jac[7:].max()) < 1e-13 * float(jac[0])
    assert float(jac[6]) > 1e-10 * float(jac[0])  # within the sub-steps' reach: coupled

    staple = _gentle(_force_model(cutoff=2.5, substeps=3, staples=[(0, 9)]))
    with torch.no_grad():
        d = float((staple(x, 0.0, 0.1)[0, 0] - staple(y, 0.0, 0.1)[0, 0]).abs().max())
    assert d > 1e-6
    assert float(blocks(staple)[9]) > 1e-6


def test_force_emulator_save_load_and_bad_arguments(tmp_path):
    m = _force_model(temperature=0.3, seed=2).eval()
    x = physres.systems.get("bead_chain", n_beads=10).sample_initial(2)
    a = m(x, 0.0, 0.1)
    m.reseed()
    assert torch.equal(a, m(x, 0.0, 0.1))
    physres.save(m, tmp_path / "m.pt")
    loaded = physres.load(tmp_path / "m.pt")
    loaded.reseed()
    assert torch.equal(loaded(x, 0.0, 0.1), a)
    with pytest.raises(ValueError, match=r"`state_shape` must be \(n_beads, 3\)"):
        physres.models.ChainForceEmulator(state_shape=(10, 2))
    with pytest.raises(ValueError, match="`substeps`"):
        physres.models.ChainForceEmulator(state_shape=(10, 3), substeps=0)


def _true_laws(system, model, dt):
    """``bead_chain``'s pair and bending laws, written out from their definitions (harmonic
    bonds and staples, Gō 12-10 native contacts, WCA on the other pairs |i − j| ≥ 2,
    ½k(cos θ − cos θ0)²), times ``dt``, in the form of the emulator's ``pair_law`` (``u'(r)/r``
    per edge, divided by the far-pair envelope) and ``angle_law`` (``dU/dcos θ``)."""
    p, native = system.params, system.native
    src, dst = model.src.tolist(), model.dst.tolist()
    contacts = {
        tuple(c): float(r0)
        for c, r0 in zip(system.contacts.tolist(), system.native_distances, strict=True)
    }
    staples = {(i, j): (k, r0) for i, j, k, r0 in system.staples}
    far = model.far.bool()

    def pair_law(r, static):
        r = r[..., 0]
        w = torch.zeros_like(r)
        for e, (i, j) in enumerate(zip(src, dst, strict=True)):
            re = r[:, e]
            if j - i == 1:
                r0 = float((native[j] - native[i]).norm())
                w[:, e] += p["k_bond"] * (1.0 - r0 / re)
            if (i, j) in staples:
                k, r0 = staples[i, j]
                w[:, e] += k * (1.0 - r0 / re)
            if (i, j) in contacts:
                s2 = (contacts[i, j] / re) ** 2
                w[:, e] += 60.0 * p["epsilon"] * (1.0 - s2) * s2**5 / re**2
            elif j - i >= 2:
                s6 = re**-6.0
                w[:, e] += torch.where(re < 2.0 ** (1 / 6), -48.0 * (s6 - 0.5) * s6 / re**2, 0.0)
            if far[e]:
                w[:, e] /= 0.5 * (1.0 + torch.cos(torch.pi * re / model.cutoff))
        return dt * w.unsqueeze(-1)

    u, v = native[:-2] - native[1:-1], native[2:] - native[1:-1]
    cos0 = (u * v).sum(-1) / (u.norm(dim=-1) * v.norm(dim=-1))

    def angle_law(c, static):
        return dt * p["k_angle"] * (c - cos0.unsqueeze(-1))

    return pair_law, angle_law


def test_force_emulator_with_the_true_laws_is_euler_on_bead_chain():
    """With the chain's own pair and bending laws plugged in, the emulator's drift is dt times
    ``bead_chain``'s analytic force, and a step of K sub-steps is K Euler steps of dt/K:
    the edge set holds every interacting pair once, signs and the bending geometry are right."""
    system = physres.systems.get("bead_chain", n_beads=10, target="hairpin", staples=[(1, 8)])
    x = system.sample_initial(3, seed=4)
    x = x + 0.05 * torch.randn(
        x.shape, generator=torch.Generator().manual_seed(1), dtype=x.dtype
    )  # off the rest lengths
    m = physres.models.ChainForceEmulator(
        state_shape=(10, 3),
        staples=[(1, 8)],
        cutoff=40.0,
        substeps=5,
        width=4,
        dt=0.01,
        dtype=torch.float64,
    )
    m.pair_law, m.angle_law = _true_laws(system, m, 0.01)
    with torch.no_grad():
        force = system.rhs(0.0, x)
        assert float(force.abs().max()) > 10.0
        assert torch.allclose(m.drift(x), 0.01 * force, rtol=1e-10, atol=1e-10)
        euler = physres.rollout(physres.steppers.get("euler", system.rhs), x, 0.002, 5)[:, -1]
        assert torch.allclose(m(x, 0.0, 0.01), euler, rtol=1e-10, atol=1e-10)
        m.angles = False  # without its bending terms the drift misses the chain's bending
        assert float((m.drift(x) - 0.01 * force).abs().max()) > 1e-2


def test_force_emulator_drift_has_no_net_force_or_torque():
    """Pair forces along the edges and bending forces from a rotation-invariant cosine
    conserve linear and angular momentum, whatever the learned laws."""
    x = physres.systems.get("bead_chain", n_beads=10).sample_initial(4, seed=2)
    for cutoff in (None, 2.0):
        m = _force_model(cutoff=cutoff)
        with torch.no_grad():
            f = m.drift(x)
            scale = float(f.abs().max())
            assert scale > 1e-2
            assert float(f.sum(1).abs().max()) < 1e-13 * scale
            torque = torch.linalg.cross(x, f, dim=-1).sum(1)
            assert float(torque.abs().max()) < 1e-13 * scale * float(x.abs().max())


def test_force_emulator_chebyshev_step_is_the_chebyshev_polynomial_of_a_linear_drift():
    """With a constant pair law φ = c on the chain edges (no bending, no far pairs) the drift
    is linear, ``F(x) = −c·L·x`` with L the Laplacian of the edge graph, so a step is a
    polynomial in L: K Euler sub-steps give ``(1 − cλ/K)^K`` on each eigenvector, the
    Chebyshev stages ``T_K(w0 − w1·cλ)/T_K(w0)`` (w0 = 1 + ε/K², w1 = T_K(w0)/T_K'(w0)), from
    numpy's Chebyshev series. At a c where Euler's factor exceeds 1 in size (cλ_max > 2K) the
    Euler rollout blows up and the Chebyshev one decays."""
    from numpy.polynomial import Chebyshev

    from physres.models.chain import CHEBYSHEV_DAMPING

    n, k = 8, 4
    x = physres.systems.get("bead_chain", n_beads=n).sample_initial(2, seed=3)
    edges = [(i, i + 1) for i in range(n - 1)] + [(i, i + 2) for i in range(n - 2)] + [(1, 6)]
    lap = np.zeros((n, n))
    for i, j in edges:
        lap[[i, j], [i, j]] += 1.0
        lap[i, j] = lap[j, i] = -1.0
    lam, vec = np.linalg.eigh(lap)
    c = 20.0 / lam.max()  # cλ_max = 20: beyond 4 Euler sub-steps (8), within Chebyshev (≈31)
    t = Chebyshev.basis(k)
    w0 = 1.0 + CHEBYSHEV_DAMPING / k**2
    w1 = t(w0) / t.deriv()(w0)
    factors = {"chebyshev": t(w0 - w1 * c * lam) / t(w0), "euler": (1.0 - c * lam / k) ** k}
    for scheme, factor in factors.items():
        m = physres.models.ChainForceEmulator(
            state_shape=(n, 3),
            staples=[(1, 6)],
            cutoff=None,
            angles=False,
            substeps=k,
            scheme=scheme,
            dt=0.1,
            dtype=torch.float64,
        )
        m.pair_law = lambda r, static: torch.full_like(r, c)
        expect = torch.from_numpy(vec @ np.diag(factor) @ vec.T) @ x
        with torch.no_grad():
            assert torch.allclose(m(x, 0.0, 0.1), expect, rtol=1e-12, atol=1e-12)
            end = physres.rollout(m, x, 0.1, 40)[:, -1]
        spread = float((end - end.mean(1, keepdim=True)).abs().max())
        start = float((x - x.mean(1, keepdim=True)).abs().max())
        if scheme == "euler":
            assert np.abs(factor).max() > 1.5 and spread > 1e3 * start
        else:  # every non-uniform mode decays (the uniform one, λ = 0, is the centre)
            assert np.abs(factor[1:]).max() < 1.0 and spread < 0.1 * start
    one = {s: _force_model(substeps=1, scheme=s) for s in ("euler", "chebyshev")}
    x = physres.systems.get("bead_chain", n_beads=10).sample_initial(2, seed=3)
    with torch.no_grad():  # one stage is one Euler step
        assert torch.allclose(one["euler"](x, 0.0, 0.1), one["chebyshev"](x, 0.0, 0.1))
    with pytest.raises(ValueError, match="`scheme`"):
        physres.models.ChainForceEmulator(state_shape=(n, 3), scheme="rk4")

"""model_for's choice of the ResNet's block from the data: polynomial or MLP, with reasons."""

import math
import re

import numpy as np
import pytest
import torch

import physres
from physres.training import TrainConfig, build, fit


def config(**overrides):
    return TrainConfig(**{"progress": False, "device": "cpu", "val_steps": 20, **overrides})


@pytest.fixture(scope="module")
def lorenz_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("l63") / "l63.h5"
    return physres.data.generate(
        "lorenz63", path, n_traj=12, t_end=6.0, dt_save=0.01, seed=2, progress=False
    )


@pytest.fixture(scope="module")
def ho_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("ho") / "ho.h5"
    return physres.data.generate(
        "harmonic_oscillator", path, n_traj=12, t_end=10.0, dt_save=0.05, seed=3, progress=False
    )


def test_lorenz63_gets_a_high_degree_polynomial_that_tracks_the_flow(lorenz_file):
    torch.manual_seed(0)
    model = physres.training.model_for(lorenz_file)
    assert isinstance(model, physres.models.ResNetEmulator)
    block = model.blocks[0]
    assert isinstance(block, physres.models.PolynomialField) and block.degree >= 5
    choices = model.training_info["model"]
    assert choices["net"].startswith(f"poly, degree {block.degree}")
    # every candidate's held-out error is recorded, and they fall with the degree
    recorded = [float(v) for v in _errors(choices["block"])]
    assert len(recorded) == 6 and recorded == sorted(recorded, reverse=True)
    assert recorded[block.degree - 1] <= build.POLY_TOLERANCE < recorded[0]
    fit(model, lorenz_file, config())
    assert model.training_info["polish"]["method"] == "lstsq"
    # against DOP853 at tight tolerance from fresh states on the attractor, over 1 time unit
    system = physres.systems.get("lorenz63")
    start = physres.reference.solve(
        system, system.sample_initial(4, seed=99), np.array([0.0, 5.0]), rtol=1e-12, atol=1e-12
    )[:, -1]
    x0 = torch.as_tensor(np.asarray(start))
    t = np.arange(101) * 0.01
    ref = np.asarray(physres.reference.solve(system, x0, t, rtol=1e-12, atol=1e-12))
    with torch.no_grad():
        pred = physres.rollout(model, x0, 0.01, 100).numpy()
    rel = np.linalg.norm(pred - ref, axis=-1) / np.linalg.norm(ref, axis=-1)
    assert rel.max() < 1e-4


def _errors(text):
    return [e.rstrip(",") for e in re.findall(r"degree \d+: ([0-9.e+-]+)", text)]


def test_the_oscillator_gets_the_linear_block_its_exact_flow_map_is(ho_file, tmp_path):
    torch.manual_seed(0)
    state = torch.get_rng_state()
    model = physres.training.model_for(ho_file, config=config(frame_step=10))
    assert torch.equal(torch.get_rng_state(), state)  # the trials leave the seed to the caller
    assert model.blocks[0].degree == 1 and "poly, degree 1" in model.training_info["model"]["net"]
    assert float(_errors(model.training_info["model"]["block"])[0]) < 1e-8
    fit(model, ho_file, config(frame_step=10))
    assert model.dt == 0.5
    # the exact flow map at dt = 0.5 (ω = 1) is the rotation [[cos, sin], [−sin, cos]]
    x = physres.systems.get("harmonic_oscillator").sample_initial(6, seed=7)
    c, s = math.cos(0.5), math.sin(0.5)
    exact = x @ torch.tensor([[c, -s], [s, c]], dtype=x.dtype)
    with torch.no_grad():
        step = model.step(x, 0.0, 0.5)
    assert float(((step - exact).norm(dim=1) / x.norm(dim=1)).max()) < 1e-8
    # the saved model file round-trips bit for bit
    physres.save(model, tmp_path / "ho.pt")
    loaded = physres.load(tmp_path / "ho.pt")
    assert type(loaded.blocks[0]) is physres.models.PolynomialField
    with torch.no_grad():
        assert torch.equal(physres.rollout(loaded, x, 0.5, 50), physres.rollout(model, x, 0.5, 50))
    assert loaded.training_info["model"] == model.training_info["model"]


def test_the_pendulum_at_a_long_step_keeps_the_mlp_and_says_why(tmp_path):
    path = physres.data.generate(
        "pendulum", tmp_path / "p.h5", n_traj=12, t_end=20.0, seed=1, progress=False
    )
    model = physres.training.model_for(path, config=config(frame_step=10))
    assert isinstance(model.blocks[0], physres.models.fields.MLP)
    choices = model.training_info["model"]
    assert choices["block"].startswith("mlp: no polynomial block within 1e-06")
    errors = [float(e) for e in _errors(choices["block"])]
    assert len(errors) == 6 and min(errors) > build.POLY_TOLERANCE
    assert "width" in choices and "linear_skip" in choices


def test_explicit_options_and_invariants_keep_the_mlp(ho_file, tmp_path):
    given = physres.training.model_for(ho_file, net="mlp")
    assert isinstance(given.blocks[0], physres.models.fields.MLP)
    assert "block" not in given.training_info["model"]
    wide = physres.training.model_for(ho_file, width=8)
    assert wide.blocks[0].net[0].out_features == 8
    assert wide.training_info["model"]["block"] == "mlp: `width` given (options of the MLP block)"
    poly = physres.training.model_for(ho_file, net="poly", net_options={"degree": 3})
    assert poly.blocks[0].degree == 3 and "block" not in poly.training_info["model"]
    rob = physres.data.generate(
        "robertson", tmp_path / "r.h5", n_traj=6, t_end=10.0, progress=False
    )
    projected = physres.training.model_for(rob)
    assert isinstance(projected, physres.models.ProjectedEmulator)
    assert "linear invariants" in projected.training_info["model"]["block"]

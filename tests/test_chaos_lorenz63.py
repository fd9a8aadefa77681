"""Polished small emulators of Lorenz-63 predict held-out chaos for several Lyapunov times."""

import numpy as np
import pytest
import torch

import physres
from physres.training import TrainConfig, fit

LAMBDA = 0.9056  # Sprott (2003)


@pytest.fixture(scope="module")
def lorenz(tmp_path_factory):
    root = tmp_path_factory.mktemp("lorenz")
    train = physres.data.generate(
        "lorenz63", root / "train.h5", n_traj=6, t_end=15.0, dt_save=0.01, seed=0, progress=False
    )
    test = physres.data.generate(
        "lorenz63", root / "test.h5", n_traj=4, t_end=15.0, dt_save=0.01, seed=99, progress=False
    )
    with physres.data.open(test) as f:
        states = np.asarray(f.states[:])  # scipy DOP853 at rtol 1e-10: the truth
    return train, states


def valid_time(model, states):
    """Lyapunov times until ‖x̂ − x‖ / ⟨‖x‖²⟩^½ > 0.4, from t = 5 (held-out states)."""
    ref = states[:, 500:]
    with torch.no_grad():
        pred = physres.rollout(
            model, torch.from_numpy(ref[:, 0].copy()), 0.01, ref.shape[1] - 1
        ).numpy()
    scale = np.sqrt(np.mean(np.sum(states[:, 200:] ** 2, -1)))
    lost = np.linalg.norm(pred - ref, axis=-1) / scale > 0.4
    first = np.where(lost.any(1), lost.argmax(1), ref.shape[1])
    return first * 0.01 * LAMBDA


@pytest.mark.parametrize(
    "kind,options",
    [
        ("resnet", dict(net="poly", net_options={"degree": 5})),
        ("node", dict(net="poly", net_options={"degree": 2}, method="rk4", step_size=0.005)),
    ],
)
def test_emulator_on_fit_defaults_predicts_five_lyapunov_times(lorenz, kind, options):
    train, states = lorenz
    model = physres.training.model_for(train, kind, **options)
    fit(model, train, TrainConfig(device="cpu", progress=False, val_steps=300, polish_windows=1024))
    info = model.training_info
    assert info["dtype"].startswith("float64") and "lstsq" in info
    assert info["polish"]["method"] == ("lstsq" if kind == "resnet" else "lm")
    vpt = valid_time(model, states)
    assert np.median(vpt) >= 5.0, vpt
    # the rollout stays on the attractor (bounded) over 20 time units
    with torch.no_grad():
        far = physres.rollout(model, torch.from_numpy(states[:, 500].copy()), 0.01, 2000)
    assert float(far[..., 2].max()) < 60 and float(far[..., 2].min()) > -5

"""fit's automatic choices: dtype, data path, second-order finish, training_info, bad input."""

import h5py
import numpy as np
import pytest
import torch

import physres
from physres.training import TrainConfig, fit
from physres.training.data import TrainingData
from physres.training.lm import gn_polish
from physres.training.losses import rollout_error, unrolled_loss


@pytest.fixture(scope="module")
def ho_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "ho.h5"
    physres.data.generate("harmonic_oscillator", path, n_traj=12, t_end=10.0, dt_save=0.05,
                          seed=3, progress=False)
    return path


def quick(**overrides):
    base = dict(epochs=1, batch_size=64, frame_step=5, progress=False, device="cpu",
                val_steps=20, polish_steps=0)
    return TrainConfig(**{**base, **overrides})


def test_float64_data_train_a_float64_model_and_every_choice_is_recorded(ho_file):
    model = physres.models.ResNetEmulator(state_shape=(2,), width=8)  # built float32
    assert model.net_dtype == torch.float32
    fit(model, ho_file, quick())
    assert model.net_dtype == torch.float64 and TrainConfig().precision == "auto"
    info = model.training_info
    assert info["dtype"].startswith("float64")
    for key in ("data_path", "normalization", "unroll", "optimiser", "polish", "stopping"):
        assert key in info, key
    assert info["data_path"].startswith("in memory")
    assert info["polish"]["method"] == "none"
    kept = physres.models.ResNetEmulator(state_shape=(2,), width=8)
    fit(kept, ho_file, quick(precision="float32"))
    assert kept.net_dtype == torch.float32


def test_in_memory_and_streamed_batches_are_identical(ho_file):
    config = quick(unroll=3)
    memory = TrainingData(ho_file, quick(unroll=3, in_memory=True))
    stream = TrainingData(ho_file, quick(unroll=3, in_memory=False))
    assert memory.in_memory and not stream.in_memory
    for epoch in (0, 1):
        batches = memory.batches(epoch, 64, config.seed)
        assert batches == stream.batches(epoch, 64, config.seed)
        pairs = list(zip(memory.loader(batches), stream.loader(batches), strict=True))
        assert len(pairs) == len(batches) > 1
        for (a_in, a_out), (b_in, b_out) in pairs:
            assert torch.equal(a_in, b_in) and torch.equal(a_out, b_out)
    # the streamed items are the dataset's own windows
    inputs, targets = memory.gather(torch.tensor([0, 7]))
    item = stream.train[7]
    assert torch.equal(inputs[1], item[0]) and torch.equal(targets[1], item[1])


def test_a_nan_state_is_refused_naming_file_and_trajectory(ho_file, tmp_path):
    bad = tmp_path / "bad.h5"
    bad.write_bytes(ho_file.read_bytes())
    split = physres.data.split_indices(12)
    traj = int(split["train"][2])
    with h5py.File(bad, "r+") as f:
        f["states"][traj, 17, 0] = np.nan
    for in_memory in (True, False):
        with pytest.raises(ValueError, match=rf"`data_path` .*bad.h5.*trajectory {traj} "
                                             "has a non-finite state") as info:
            fit(physres.models.ResNetEmulator(state_shape=(2,), width=8), bad,
                quick(in_memory=in_memory, batch_size=1024))
        assert "\n" not in str(info.value)


def test_model_and_data_mismatch_name_the_argument(ho_file):
    with pytest.raises(ValueError, match=r"`model` has state_shape \(3,\).*\(2,\)"):
        fit(physres.models.ResNetEmulator(state_shape=(3,), width=8), ho_file, quick())
    with pytest.raises(ValueError, match="`model` takes complex states.*are real"):
        fit(physres.models.ResNetEmulator(state_shape=(2,), width=8, complex_state=True),
            ho_file, quick())
    with pytest.raises(ValueError, match="model's `dt` = 0.1 differs"):
        fit(physres.models.ResNetEmulator(state_shape=(2,), width=8, dt=0.1), ho_file,
            quick())
    with pytest.raises(ValueError, match="`precision` must be one of"):
        quick(precision="float16")
    with pytest.raises(ValueError, match="`polish_method` = 'lstsq' needs a model linear"):
        fit(physres.models.ResNetEmulator(state_shape=(2,), width=8), ho_file,
            quick(polish_method="lstsq"))


def test_large_models_get_the_matrix_free_finish_and_dense_lm_names_its_limit(ho_file):
    big = physres.models.ResNetEmulator(state_shape=(2,), width=160, layers=2)
    result = fit(big, ho_file, quick(polish_steps=2, polish_windows=128))
    assert big.training_info["polish"]["method"] == "gn"
    assert big.training_info["polish"]["iterations"] >= 1
    assert result.steps > 2
    with pytest.raises(ValueError, match="`polish_method` = 'lm' builds"):
        fit(physres.models.ResNetEmulator(state_shape=(2,), width=200, layers=2), ho_file,
            quick(polish_steps=1, polish_method="lm"))
    small = physres.models.ResNetEmulator(state_shape=(2,), width=8)
    fit(small, ho_file, quick(polish_steps=2))
    assert small.training_info["polish"]["method"] == "lm"


def test_gauss_newton_cg_reaches_the_exact_oscillator_flow(ho_file):
    # the exact step map is linear: a linear_skip MLP represents it, and the matrix-free
    # Gauss–Newton iterations must drive the two-step loss far below AdamW's
    data = TrainingData(ho_file, quick(unroll=2))
    inputs, targets = data.gather(torch.arange(0, len(data.train), 6))
    torch.manual_seed(0)
    model = physres.models.ResNetEmulator(state_shape=(2,), width=8, dtype=torch.float64,
                                          net_options={"linear_skip": True})
    model.set_normalization(data.normalization["mean"], data.normalization["std"])
    before = float(unrolled_loss(model, inputs, targets, 0.25, 2).detach())
    losses = gn_polish(model, inputs, targets, 0.25, 2, 20, cg_iter=30)
    after = float(unrolled_loss(model, inputs, targets, 0.25, 2).detach())
    assert after == pytest.approx(losses[-1], rel=1e-9)
    assert after < before * 1e-6


def test_clipped_validation_error_counts_lost_steps_at_the_cap():
    # identity map on x(t) = (1 + t, 0): per-step error t/rms, capped at θ
    dt, theta = 0.1, 0.4
    t = np.arange(21) * dt
    states = torch.from_numpy(np.stack([1 + t, 0 * t], -1)[None])  # (1, 21, 2)

    class Identity(physres.steppers.Stepper):
        order, explicit = 1, True

        def __init__(self):
            super().__init__(None, state_shape=(2,))

        def _step(self, x, t, dt):
            return x.clone()

    rms = np.sqrt(np.mean((1 + t) ** 2))
    expected = np.minimum(t[1:] / rms, theta).mean()
    assert rollout_error(Identity(), states, dt, theta) == pytest.approx(expected, rel=1e-12)
    full = np.sqrt(np.sum(t**2) / np.sum((1 + t) ** 2))
    assert rollout_error(Identity(), states, dt) == pytest.approx(full, rel=1e-12)


def test_pushforward_scores_the_last_step_with_gradient_through_it_only(ho_file):
    data = TrainingData(ho_file, quick(unroll=3))
    inputs, targets = data.gather(torch.arange(8))
    model = physres.models.ResNetEmulator(state_shape=(2,), width=8, dtype=torch.float64)
    loss = unrolled_loss(model, inputs, targets, 0.25, 3, pushforward=True)
    with torch.no_grad():
        x = inputs[:, 0]
        for _ in range(2):
            x = model(x, 0.0, 0.25)
    last = model(x, 0.0, 0.25)
    manual = ((last - targets[:, 2]) / model.norm_std).pow(2).mean()
    torch.testing.assert_close(loss, manual, rtol=1e-12, atol=0)
    g1 = torch.autograd.grad(loss, list(model.parameters()))
    g2 = torch.autograd.grad(manual, list(model.parameters()))
    for a, b in zip(g1, g2, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-14)


def test_noise_and_pushforward_train(ho_file):
    torch.manual_seed(0)
    model = physres.models.ResNetEmulator(state_shape=(2,), width=16)
    result = fit(model, ho_file, quick(epochs=4, unroll=3, noise=1e-3, pushforward=True,
                                       lr=1e-2))
    assert result.losses[-1] < result.losses[0] / 10
    assert "noise" in model.training_info and "pushforward" in model.training_info


def test_ctrl_c_writes_a_checkpoint_and_says_how_to_resume(ho_file, tmp_path, capsys):
    def interrupt(step, loss):
        if step == 4:
            raise KeyboardInterrupt

    ckpt = tmp_path / "run.ckpt"
    torch.manual_seed(0)
    with pytest.raises(KeyboardInterrupt):
        fit(physres.models.ResNetEmulator(state_shape=(2,), width=8), ho_file,
            quick(epochs=2, checkpoint=str(ckpt)), callback=interrupt)
    assert ckpt.is_file()
    err = capsys.readouterr().err
    assert "fit interrupted at step 4" in err and "--resume" in err
    state = torch.load(ckpt, weights_only=True)["state"]
    assert state["step"] == 4
    torch.manual_seed(0)
    straight = fit(physres.models.ResNetEmulator(state_shape=(2,), width=8), ho_file,
                   quick(epochs=2))
    resumed = fit(physres.models.ResNetEmulator(state_shape=(2,), width=8), ho_file,
                  quick(epochs=2, checkpoint=str(ckpt), resume=True))
    assert resumed.losses == straight.losses


def test_run_keys_come_from_the_config_metadata():
    from physres.training import loop

    keys = TrainConfig.resume_keys()
    assert loop._RUN_KEYS == keys
    assert {"epochs", "lr", "unroll", "precision", "polish_method"} <= set(keys)
    assert not {"device", "progress", "checkpoint", "log"} & set(keys)
    import dataclasses

    assert all(f.metadata.get("help") for f in dataclasses.fields(TrainConfig))

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
    physres.data.generate(
        "harmonic_oscillator", path, n_traj=12, t_end=10.0, dt_save=0.05, seed=3, progress=False
    )
    return path


def quick(**overrides):
    base = dict(
        epochs=1,
        batch_size=64,
        frame_step=5,
        progress=False,
        device="cpu",
        val_steps=20,
        polish_steps=0,
    )
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
        with pytest.raises(
            ValueError,
            match=rf"`data_path` .*bad.h5.*trajectory {traj} "
            "has a non-finite state",
        ) as info:
            fit(
                physres.models.ResNetEmulator(state_shape=(2,), width=8),
                bad,
                quick(in_memory=in_memory, batch_size=1024),
            )
        assert "\n" not in str(info.value)


def test_model_and_data_mismatch_name_the_argument(ho_file):
    with pytest.raises(ValueError, match=r"`model` has state_shape \(3,\).*\(2,\)"):
        fit(physres.models.ResNetEmulator(state_shape=(3,), width=8), ho_file, quick())
    with pytest.raises(ValueError, match="`model` takes complex states.*are real"):
        fit(
            physres.models.ResNetEmulator(state_shape=(2,), width=8, complex_state=True),
            ho_file,
            quick(),
        )
    with pytest.raises(ValueError, match="model's `dt` = 0.1 differs"):
        fit(physres.models.ResNetEmulator(state_shape=(2,), width=8, dt=0.1), ho_file, quick())
    with pytest.raises(ValueError, match="`precision` must be one of"):
        quick(precision="float16")
    with pytest.raises(ValueError, match="`polish_method` = 'lstsq' needs a model linear"):
        fit(
            physres.models.ResNetEmulator(state_shape=(2,), width=8),
            ho_file,
            quick(polish_method="lstsq"),
        )


def test_large_models_get_the_matrix_free_finish_and_dense_lm_names_its_limit(ho_file):
    big = physres.models.ResNetEmulator(state_shape=(2,), width=160, layers=2)
    result = fit(big, ho_file, quick(polish_steps=2, polish_windows=128))
    assert big.training_info["polish"]["method"] == "gn"
    assert big.training_info["polish"]["iterations"] >= 1
    assert result.steps > 2
    with pytest.raises(ValueError, match="`polish_method` = 'lm' builds"):
        fit(
            physres.models.ResNetEmulator(state_shape=(2,), width=200, layers=2),
            ho_file,
            quick(polish_steps=1, polish_method="lm"),
        )
    small = physres.models.ResNetEmulator(state_shape=(2,), width=8)
    fit(small, ho_file, quick(polish_steps=2))
    assert small.training_info["polish"]["method"] == "lm"


def test_gauss_newton_cg_reaches_the_exact_oscillator_flow(ho_file):
    # the exact step map is linear: a linear_skip MLP represents it, and the matrix-free
    # Gauss–Newton iterations must drive the two-step loss far below AdamW's
    data = TrainingData(ho_file, quick(unroll=2))
    inputs, targets = data.gather(torch.arange(0, len(data.train), 6))
    torch.manual_seed(0)
    model = physres.models.ResNetEmulator(
        state_shape=(2,), width=8, dtype=torch.float64, net_options={"linear_skip": True}
    )
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
    result = fit(model, ho_file, quick(epochs=4, unroll=3, noise=1e-3, pushforward=True, lr=1e-2))
    assert result.losses[-1] < result.losses[0] / 10
    assert "noise" in model.training_info and "pushforward" in model.training_info


def test_ctrl_c_writes_a_checkpoint_and_says_how_to_resume(ho_file, tmp_path, capsys):
    def interrupt(step, loss):
        if step == 4:
            raise KeyboardInterrupt

    ckpt = tmp_path / "run.ckpt"
    torch.manual_seed(0)
    with pytest.raises(KeyboardInterrupt):
        fit(
            physres.models.ResNetEmulator(state_shape=(2,), width=8),
            ho_file,
            quick(epochs=2, checkpoint=str(ckpt)),
            callback=interrupt,
        )
    assert ckpt.is_file()
    err = capsys.readouterr().err
    assert "fit interrupted at step 4" in err and "--resume" in err
    state = torch.load(ckpt, weights_only=True)["state"]
    assert state["step"] == 4
    torch.manual_seed(0)
    straight = fit(
        physres.models.ResNetEmulator(state_shape=(2,), width=8), ho_file, quick(epochs=2)
    )
    resumed = fit(
        physres.models.ResNetEmulator(state_shape=(2,), width=8),
        ho_file,
        quick(epochs=2, checkpoint=str(ckpt), resume=True),
    )
    assert resumed.losses == straight.losses


def test_run_keys_come_from_the_config_metadata():
    from physres.training import loop

    keys = TrainConfig.resume_keys()
    assert loop._RUN_KEYS == keys
    assert {"epochs", "lr", "unroll", "precision", "polish_method"} <= set(keys)
    assert not {"device", "progress", "checkpoint", "log"} & set(keys)
    import dataclasses

    assert all(f.metadata.get("help") for f in dataclasses.fields(TrainConfig))


# --- defaults chosen from the data and the model ----------------------------------------------
@pytest.fixture(scope="module")
def robertson_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("rob") / "rob.h5"
    return physres.data.generate("robertson", path, n_traj=10, t_end=10.0, progress=False)


def test_model_for_a_small_float64_state_is_float64_and_fits_the_dense_finish(ho_file):
    from physres.training import build, loop
    from physres.training.lm import DENSE_FLOPS, MIN_DENSE_WINDOWS

    model = physres.training.model_for(ho_file, net="mlp")  # auto: degree 1 (test_build_block)
    assert isinstance(model, physres.models.ResNetEmulator)
    assert model.net_dtype == torch.float64
    mlp = model.blocks[0]
    assert mlp.linear is not None  # linear_skip
    width = mlp.net[0].out_features
    choices = model.training_info["model"]
    assert choices["width"].startswith(f"{width}:") and "linear_skip" in choices
    # the chosen width is the widest candidate whose dense normal equations on all the
    # default polish windows fit the budget
    n_params = sum(p.numel() for p in model.parameters())
    per_window, wanted = TrainConfig().unroll * 2, TrainConfig().polish_windows
    assert DENSE_FLOPS / (per_window * n_params**2) >= wanted >= MIN_DENSE_WINDOWS
    wider = [w for w in build.WIDTHS if w > width]
    assert wider
    for w in wider:
        big = physres.models.ResNetEmulator(
            state_shape=(2,), width=w, net_options={"linear_skip": True}
        )
        n = sum(p.numel() for p in big.parameters())
        assert DENSE_FLOPS / (per_window * n**2) < wanted
    # fit's plan: dense LM, a warm-up of whole epochs of >= WARMUP_STEPS AdamW steps and the
    # long LM budget with stall stopping
    config = TrainConfig(frame_step=5, device="cpu", progress=False)
    data = TrainingData(ho_file, config)
    plan = loop._polish_plan(model, config, data, None)
    assert plan["method"] == "lm" and plan["steps"] == loop.LM_STEPS and "stall" in plan
    per_epoch = len(data.batches(0, config.batch_size, config.seed))
    epochs, why = loop._epochs_plan(config, plan, per_epoch)
    assert (epochs - 1) * per_epoch < loop.WARMUP_STEPS <= epochs * per_epoch and "warm-up" in why
    # with `epochs` set the finish is the short one, and without a dense finish 100 epochs
    assert loop._polish_plan(model, TrainConfig(epochs=3), data, None)["steps"] == loop.POLISH_STEPS
    assert loop._epochs_plan(config, {"method": "gn"}, per_epoch)[0] == loop.EPOCHS
    # explicit arguments win
    given = physres.training.model_for(ho_file, width=8, dtype=torch.float32)
    assert given.net_dtype == torch.float32 and given.blocks[0].net[0].out_features == 8


def test_model_for_sizes_the_mlp_for_the_config_it_will_be_fitted_with(ho_file):
    # fewer polish windows leave room in the dense budget for a wider MLP
    from physres.training.lm import DENSE_FLOPS

    default = physres.training.model_for(ho_file, net="mlp")
    few = TrainConfig(polish_windows=64, device="cpu", progress=False)
    wide = physres.training.model_for(ho_file, net="mlp", config=few)
    w_default = default.blocks[0].net[0].out_features
    w_few = wide.blocks[0].net[0].out_features
    assert w_few > w_default
    n = sum(p.numel() for p in wide.parameters())
    assert DENSE_FLOPS / (few.unroll * 2 * n**2) >= few.polish_windows
    assert "all 64 polish windows" in wide.training_info["model"]["width"]


def test_a_large_state_keeps_the_wide_mlp_and_the_matrix_free_finish(tmp_path):
    path = physres.data.generate(
        "lorenz96", tmp_path / "l96.h5", n_traj=3, t_end=0.5, progress=False
    )
    model = physres.training.model_for(path)
    assert model.blocks[0].net[0].out_features == 64 and model.blocks[0].linear is None
    assert "too large" in model.training_info["model"]["width"]


def test_declared_linear_invariants_are_exact_and_pick_the_projected_model(robertson_file, ho_file):
    declared = [
        n for n in physres.systems.names() if physres.systems.REGISTRY.resolve(n).linear_invariants
    ]
    assert {"robertson", "hires", "e5"} <= set(declared)
    for name in declared:
        system = physres.systems.get(name)
        x = system.sample_initial(4, seed=1)
        x = x * (
            1 + 0.1 * torch.rand(x.shape, generator=torch.Generator().manual_seed(2), dtype=x.dtype)
        )
        c = torch.tensor(system.linear_invariants, dtype=x.dtype)
        f = system.rhs(0.0, x).reshape(4, -1)
        scale = f.abs().sum(1, keepdim=True)
        assert float(((f @ c.T).abs() / scale).max()) < 1e-14, name
    model = physres.training.model_for(robertson_file)
    assert isinstance(model, physres.models.ProjectedEmulator)
    torch.testing.assert_close(model.invariant_matrix, torch.ones(1, 3, dtype=torch.float64))
    assert isinstance(model.model, physres.models.ResNetEmulator)
    assert "robertson declares" in model.training_info["model"]["projection"]
    plain = physres.training.model_for(robertson_file, project=False)
    assert isinstance(plain, physres.models.ResNetEmulator)
    assert isinstance(
        physres.training.model_for(robertson_file, "projected"), physres.models.ProjectedEmulator
    )
    with pytest.raises(ValueError, match="`project` = True needs linear invariants"):
        physres.training.model_for(ho_file, project=True)
    with pytest.raises(ValueError, match="`kind` = 'projected' needs `invariants`"):
        physres.training.model_for(ho_file, "projected")


def test_a_saved_model_records_its_choices_and_reloads_bit_for_bit(robertson_file, tmp_path):
    torch.manual_seed(0)
    model = physres.training.model_for(robertson_file)
    fit(model, robertson_file, quick(polish_steps=2, polish_windows=64))
    info = model.training_info
    assert set(info["model"]) >= {"dtype", "width", "linear_skip", "projection"}
    assert info["polish"]["method"] == "lm" and info["polish"]["iterations"] >= 1
    assert {"epochs", "stopped"} <= set(info) | set(info["polish"])
    path = tmp_path / "rob.pt"
    physres.save(model, path)
    loaded = physres.load(path)
    assert type(loaded) is type(model) and loaded.training_info == info
    x = physres.systems.get("robertson").sample_initial(5, seed=4)
    with torch.no_grad():
        a, b = physres.rollout(model, x, model.dt, 8), physres.rollout(loaded, x, model.dt, 8)
    assert torch.equal(a, b)
    assert float((a.sum(-1) - x.sum(-1, keepdim=True)).abs().max()) <= 1e-13


def test_an_untrainable_finish_is_refused_before_training_naming_the_setting(ho_file):
    steps = []
    with pytest.raises(ValueError, match=r"^`polish_method` = 'lm' builds") as info:
        fit(
            physres.models.ResNetEmulator(state_shape=(2,), width=200),
            ho_file,
            quick(polish_steps=1, polish_method="lm"),
            callback=lambda s, loss: steps.append(s),
        )
    assert "\n" not in str(info.value) and steps == []
    # 19106 parameters (dense normal equations allowed) but a ~16000-row Jacobian: too large
    with pytest.raises(ValueError, match=r"lower `polish_windows` \(now \d+\)"):
        fit(
            physres.models.ResNetEmulator(state_shape=(2,), width=96, layers=3),
            ho_file,
            quick(frame_step=1, unroll=4, polish_steps=1, polish_method="lm", max_steps=1),
            callback=lambda s, loss: steps.append(s),
        )
    assert steps == []
    for bad, match in (
        (dict(polish_stall=1.0), "`polish_stall` must be below 1"),
        (dict(epochs=0), "`epochs` must be >= 1"),
        (dict(polish_steps=-1), "`polish_steps` must be >= 0"),
    ):
        with pytest.raises(ValueError, match=match):
            TrainConfig(**bad)


def test_levenberg_marquardt_stops_when_its_loss_stalls(ho_file):
    from physres.training.lm import lm_polish, stalled

    assert stalled([1.0] + [0.95] * 3, 3, 0.1) and not stalled([1.0, 0.5, 0.4, 0.3], 3, 0.1)
    assert not stalled([1.0, 0.99], 3, 0.1)  # too few iterations to judge
    data = TrainingData(ho_file, quick(unroll=2))
    inputs, targets = data.gather(torch.arange(0, len(data.train), 4))
    torch.manual_seed(0)
    model = physres.models.ResNetEmulator(state_shape=(2,), width=6, dtype=torch.float64)
    model.set_normalization(data.normalization["mean"], data.normalization["std"])
    free = lm_polish(model, inputs, targets, 0.25, 2, 60)
    torch.manual_seed(0)
    model = physres.models.ResNetEmulator(state_shape=(2,), width=6, dtype=torch.float64)
    model.set_normalization(data.normalization["mean"], data.normalization["std"])
    stopped = lm_polish(model, inputs, targets, 0.25, 2, 60, stall=(5, 0.5))
    assert stopped == free[: len(stopped)]  # the same iterations, ended early
    assert len(stopped) < len(free) and stalled(stopped, 5, 0.5)
    assert not any(stalled(stopped[:i], 5, 0.5) for i in range(len(stopped)))


def test_model_for_leaves_the_random_state_to_the_model(ho_file):
    # the automatic choices build trial models only to count parameters: the seed the caller
    # set must give the same weights as building the chosen model directly
    torch.manual_seed(3)
    auto = physres.training.model_for(ho_file, net="mlp")
    torch.manual_seed(3)
    direct = physres.models.ResNetEmulator(
        state_shape=(2,), width=16, dtype=torch.float64, net_options={"linear_skip": True}
    )
    for a, b in zip(auto.state_dict().values(), direct.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_mixed_precision_is_opt_in():
    """fp16 autocast caps the accuracy the float64 finish reaches: never on unless asked,
    even on CUDA; asked for on the CPU it is refused by name."""
    from physres.training.loop import _amp

    assert physres.training.TrainConfig().amp is False
    assert _amp(False, torch.device("cuda")) is False
    assert _amp(True, torch.device("cuda")) is True
    with pytest.raises(ValueError, match="`amp`"):
        _amp(True, torch.device("cpu"))

"""The fit loop on small HDF5 files of harmonic-oscillator reference trajectories."""

import csv
import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import physres
from physres.training import TrainConfig, fit


@pytest.fixture(scope="module")
def ho_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "ho.h5"
    physres.data.generate(
        "harmonic_oscillator", path, n_traj=12, t_end=10.0, dt_save=0.05, seed=3, progress=False
    )
    return path


def small(**overrides):
    base = dict(
        epochs=4,
        batch_size=64,
        lr=1e-2,
        frame_step=5,
        progress=False,
        device="cpu",
        val_steps=20,
        unroll=1,
        polish_steps=0,
        val_metric="full",
    )
    return TrainConfig(**{**base, **overrides})


def resnet(**kw):
    return physres.models.ResNetEmulator(state_shape=(2,), width=32, **kw)


def test_fit_learns_the_flow_sets_dt_and_normalisation_and_logs(ho_file, tmp_path):
    torch.manual_seed(0)
    model = resnet()
    log = tmp_path / "log"
    result = fit(model, ho_file, small(epochs=12, log=str(log)))
    assert result.losses[-1] < result.losses[0] / 100
    errors = [e["val_error"] for e in result.evaluations]
    assert result.best_val_error == min(errors) < errors[0] / 5
    assert model.dt == pytest.approx(5 * 0.05)
    assert not model.training
    # normalisation: the training split's statistics, computed here from the file directly
    split = physres.data.split_indices(12, (0.8, 0.1, 0.1), seed=0)
    with physres.data.open(ho_file) as f:
        train = np.asarray(f.states[list(split["train"])])  # (n, n_t, 2)
    np.testing.assert_allclose(model.norm_mean.numpy(), train.mean((0, 1)), atol=1e-12)
    np.testing.assert_allclose(model.norm_std.numpy(), train.std((0, 1)), rtol=1e-10)
    # logs: one CSV row per step, validation errors on the epoch-end rows; JSON summary
    with open(f"{log}.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == result.steps == len(result.history)
    assert [float(r["loss"]) for r in rows] == pytest.approx(result.losses, rel=1e-8)
    assert sum(r["val_error"] != "" for r in rows) == len(result.evaluations) == 12
    with open(f"{log}.json") as fh:
        doc = json.load(fh)
    assert doc["steps"] == result.steps and doc["model"] == "resnet"
    assert doc["best_val_error"] == pytest.approx(result.best_val_error)


def test_unrolled_curriculum_ramps_k(ho_file):
    config = small(epochs=6, unroll=3, curriculum_epochs=4)
    assert [config.unroll_at(e) for e in range(6)] == [1, 1, 2, 2, 3, 3]
    result = fit(resnet(), ho_file, config)
    per_epoch = {h["epoch"]: h["unroll"] for h in result.history}
    assert per_epoch == {0: 1, 1: 1, 2: 2, 3: 2, 4: 3, 5: 3}


def test_same_seed_same_losses(ho_file):
    runs = []
    for _ in range(2):
        torch.manual_seed(5)
        runs.append(fit(resnet(stochastic_depth=0.2, depth=2), ho_file, small(epochs=2)).losses)
    assert runs[0] == runs[1]


def test_interrupted_run_resumes_with_identical_losses(ho_file, tmp_path):
    def model():
        torch.manual_seed(1)
        return resnet(depth=2, stochastic_depth=0.3)  # stochastic depth uses the RNG too

    config = dict(epochs=3, unroll=2, curriculum_epochs=1)
    straight_model = model()
    straight = fit(straight_model, ho_file, small(**config))

    class Interrupt(Exception):
        pass

    def stop_at_13(step, loss):
        if step == 13:
            raise Interrupt

    ckpt = str(tmp_path / "run.ckpt")
    with pytest.raises(Interrupt):
        fit(
            model(),
            ho_file,
            small(**config, checkpoint=ckpt, checkpoint_every=5),
            callback=stop_at_13,
        )
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())
    resumed_model = physres.models.ResNetEmulator(
        state_shape=(2,), width=32, depth=2, stochastic_depth=0.3
    )
    resumed = fit(resumed_model, ho_file, small(**config, checkpoint=ckpt, resume=True))
    assert resumed.history[10]["step"] == 11  # the checkpoint at step 10, then onwards
    assert resumed.losses == straight.losses  # bit for bit, including the restored history
    x = torch.randn(4, 2)
    torch.testing.assert_close(
        resumed_model(x, 0.0, 0.25), straight_model(x, 0.0, 0.25), rtol=0, atol=0
    )


def test_max_steps_stops_and_resume_finishes(ho_file, tmp_path):
    ckpt = str(tmp_path / "c.ckpt")
    first = fit(resnet(), ho_file, small(epochs=2, max_steps=3, checkpoint=ckpt))
    assert first.interrupted and first.steps == 3
    rest = fit(resnet(), ho_file, small(epochs=2, checkpoint=ckpt, resume=True))
    assert not rest.interrupted and rest.epochs_run == 2
    assert rest.history[:3] == first.history


def test_early_stopping_restores_the_best_weights(ho_file):
    # a learning rate so small that the validation error cannot improve after the first epoch
    result = fit(resnet(), ho_file, small(epochs=10, lr=1e-12, patience=2))
    assert result.stopped_early and result.epochs_run == 3 and result.best_epoch == 1


@pytest.mark.parametrize("kind", ["node", "implicit", "hybrid"])
def test_fit_other_models(ho_file, kind):
    options = {
        "node": dict(method="rk4"),
        "implicit": {},
        "hybrid": dict(system="harmonic_oscillator", coarse="euler"),
    }[kind]
    torch.manual_seed(0)
    model = physres.models.get(kind, state_shape=(2,), width=16, **options)
    result = fit(model, ho_file, small(epochs=3, batch_size=128))
    assert result.losses[-1] < result.losses[0] / 10


def test_bad_settings(ho_file, tmp_path):
    with pytest.raises(ValueError, match="`amp` .* CUDA only"):
        fit(resnet(), ho_file, small(amp=True))
    with pytest.raises(ValueError, match="`resume` needs a `checkpoint`"):
        small(resume=True)
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        fit(resnet(), ho_file, small(resume=True, checkpoint=str(tmp_path / "none.ckpt")))
    with pytest.raises(ValueError, match="`batch_size` must be >= 1"):
        small(batch_size=0)
    with pytest.raises(ValueError, match="`schedule` must be one of"):
        small(schedule="step")
    with pytest.raises(ValueError, match="model's `dt` = 0.1 differs from the data's step"):
        fit(resnet(dt=0.1), ho_file, small())
    with pytest.raises(TypeError, match="`config` must be a TrainConfig"):
        fit(resnet(), ho_file, {"epochs": 1})
    ckpt = str(tmp_path / "d.ckpt")
    fit(resnet(), ho_file, small(epochs=1, checkpoint=ckpt))
    with pytest.raises(ValueError, match=r"settings differ .*\(batch_size\)"):
        fit(resnet(), ho_file, small(epochs=1, batch_size=32, checkpoint=ckpt, resume=True))


DDP_SCRIPT = textwrap.dedent("""
    import os, sys, torch, physres
    torch.set_num_threads(1)
    torch.manual_seed(int(os.environ["RANK"]))  # different initial weights: DDP must sync
    model = physres.models.ResNetEmulator(state_shape=(2,), width=16)
    cfg = physres.training.TrainConfig(epochs=2, batch_size=64, frame_step=5, progress=False,
                                       device="cpu", val_steps=10)
    result = physres.training.fit(model, sys.argv[1], cfg)
    torch.save({k: v for k, v in model.state_dict().items()},
               os.path.join(sys.argv[2], f"rank{os.environ['RANK']}.pt"))
    torch.save(torch.tensor(result.losses), os.path.join(sys.argv[2],
               f"losses{os.environ['RANK']}.pt"))
""")


def test_two_process_torchrun_ends_with_identical_weights(ho_file, tmp_path):
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        torchrun,
        "--standalone",
        "--nproc_per_node",
        "2",
        str(script),
        str(ho_file),
        str(tmp_path),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    w0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    w1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    for key in w0:
        assert torch.equal(w0[key], w1[key]), key
    # every rank logs the loss averaged over ranks
    assert torch.equal(torch.load(tmp_path / "losses0.pt"), torch.load(tmp_path / "losses1.pt"))


def test_lbfgs_polish_lowers_the_loss_and_keeps_the_better_weights(ho_file):
    torch.manual_seed(0)
    model = resnet(dtype=torch.float64)
    result = fit(
        model,
        ho_file,
        small(epochs=3, unroll=2, polish_steps=3, polish_iter=10, polish_windows=512),
    )
    polish = result.losses[-3:]
    assert polish[-1] < polish[0]
    before, after = (e["val_error"] for e in result.evaluations[-2:])
    assert result.best_val_error == min(before, after)
    x = torch.randn(4, 2)
    # the weights in the model are the best ones: re-scoring them gives the best error
    data = physres.training.data.TrainingData(ho_file, small(epochs=3, unroll=2))
    rescored = physres.training.rollout_error(model, data.val_states, 0.25)
    assert rescored == pytest.approx(result.best_val_error, rel=1e-12)
    assert model(x, 0.0, 0.25).shape == (4, 2)


def test_lm_polish_reaches_the_exact_flow_of_the_oscillator(ho_file):
    # The exact step map of the oscillator is linear, so a `linear_skip` MLP can represent it;
    # Levenberg–Marquardt must find it far below where AdamW and L-BFGS stall (~1e-8), checked
    # against the analytic solution from held-out initial states over 400 steps.
    torch.manual_seed(0)
    model = resnet(dtype=torch.float64, net_options={"linear_skip": True})
    result = fit(
        model,
        ho_file,
        small(epochs=1, lr=1e-3, polish_steps=60, polish_method="lm", polish_windows=256),
    )
    assert result.losses[-1] < 1e-12
    system = physres.systems.get("harmonic_oscillator")
    x0 = system.sample_initial(8, seed=99)
    with torch.no_grad():
        pred = physres.rollout(model, x0, 0.25, 400)
    exact = system.solution(x0, 0.25 * torch.arange(401))
    error = physres.validation.metrics.relative_l2(pred, exact).max()
    assert error < 1e-6


def test_lm_polish_of_a_fixed_grid_neural_ode_and_refusal_of_adaptive_ones(ho_file):
    from physres.training.lm import lm_polish

    data = physres.training.data.TrainingData(ho_file, small(unroll=2))
    items = [data.train[i] for i in range(0, len(data.train), 8)][:48]
    inputs = torch.stack([a for a, _ in items])
    targets = torch.stack([b for _, b in items])
    torch.manual_seed(0)
    model = physres.models.NeuralODE(state_shape=(2,), width=8, method="rk4", dtype=torch.float64)
    model.set_normalization(data.normalization["mean"], data.normalization["std"])
    with torch.no_grad():
        before = float(physres.training.unrolled_loss(model, inputs, targets, 0.25, 2))
    losses = lm_polish(model, inputs, targets, 0.25, 2, 8)
    with torch.no_grad():
        after = float(physres.training.unrolled_loss(model, inputs, targets, 0.25, 2))
    assert after == pytest.approx(losses[-1], rel=1e-9)  # the model holds the final weights
    assert after < before / 1000
    adaptive = physres.models.NeuralODE(state_shape=(2,), width=8, method="dopri5")
    with pytest.raises(ValueError, match="needs a step that torch.func can vmap"):
        lm_polish(adaptive, inputs, targets, 0.25, 1, 1)


def test_lm_polish_refuses_large_models_and_unknown_methods(ho_file):
    from physres.training.lm import lm_polish

    big = physres.models.ResNetEmulator(state_shape=(2,), width=200, layers=2)
    x = torch.zeros(4, 1, 2)
    with pytest.raises(ValueError, match="`polish_method` = 'lm' builds"):
        lm_polish(big, x, x, 0.25, 1, 1)
    many = torch.zeros(20_000, 1, 2)
    with pytest.raises(ValueError, match="lower `polish_windows` \\(now 20000\\)"):
        lm_polish(resnet(layers=10), many, many, 0.25, 1, 1)
    with pytest.raises(ValueError, match="`polish_method` must be one of"):
        small(polish_method="newton")


@pytest.mark.slow
def test_physres_train_on_oscillator_defaults_reaches_1e_3_over_1000_steps(tmp_path):
    # `physres generate` + `physres train --frame-step 10`, nothing else set (1-3 min): every
    # model and optimiser choice is the package's; scored against the exact solution from
    # held-out initial states
    from physres.cli import main

    data, out = tmp_path / "ho.h5", tmp_path / "ho.pt"
    assert main(["generate", "harmonic_oscillator", "--out", str(data), "--no-progress"]) == 0
    assert main(["train", str(data), "--out", str(out), "--frame-step", "10", "--no-progress"]) == 0
    model = physres.load(out)
    assert model.training_info["polish"]["method"] == "lstsq"  # the exact flow map is linear
    system = physres.systems.get("harmonic_oscillator")
    x0 = system.sample_initial(16, seed=12345)
    with torch.no_grad():
        pred = physres.rollout(model, x0, 0.5, 1000)
    exact = system.solution(x0, 0.5 * torch.arange(1001))
    assert physres.validation.metrics.relative_l2(pred, exact).max() < 1e-3

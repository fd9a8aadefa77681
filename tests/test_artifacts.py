"""Model files: exact round trips, and refusal of anything that is not a physres model file."""

import os
import pickle
import stat
import zipfile

import pytest
import torch

import physres
from physres.errors import FormatError

MODELS = {
    "resnet": dict(state_shape=(2,), depth=3, width=8, learn_scale=True, alpha=0.5, dt=0.2),
    "node": dict(state_shape=(2,), width=8, method="rk38", step_size=0.05, adjoint=True),
    "implicit": dict(state_shape=(2,), width=8, dtype=torch.float64),
    "hybrid": dict(
        state_shape=(2,),
        system="pendulum",
        system_params={"omega": 1.3},
        coarse="heun",
        width=8,
        dt=0.2,
    ),
}


def _perturbed(kind):
    torch.manual_seed(2)
    model = physres.models.get(kind, **MODELS[kind])
    with torch.no_grad():  # weights that are not the constructor's initialisation
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    model.set_normalization(torch.tensor([0.3, -0.1]), torch.tensor([1.2, 0.7]))
    model.dt = 0.2
    return model.eval()


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_save_load_reproduces_outputs_bit_for_bit(kind, tmp_path):
    model = _perturbed(kind)
    path = physres.save(model, tmp_path / f"{kind}.pt", metadata={"data": "x.h5"})
    loaded = physres.load(path)
    assert type(loaded) is type(model) and loaded.dt == 0.2 and not loaded.training
    x = torch.randn(5, 2)
    with torch.no_grad():
        assert torch.equal(loaded(x, 0.0, 0.2), model(x, 0.0, 0.2))
        a = physres.rollout(loaded, x, 0.2, 20)
        b = physres.rollout(model, x, 0.2, 20)
    assert torch.equal(a, b)
    assert torch.equal(loaded.norm_std, model.norm_std)
    assert physres.artifacts.metadata(path) == {"data": "x.h5"}


def test_nested_modules_and_systems_round_trip(tmp_path):
    net = physres.models.MLP(state_shape=(2,), width=5, activation="gelu", dtype=torch.float64)
    model = physres.models.HybridStepper(
        state_shape=(2,),
        system=physres.systems.get("pendulum", omega=0.7),
        net=net,
        dt=0.1,
        dtype=torch.float64,
    )
    loaded = physres.load(physres.save(model, tmp_path / "h.pt"))
    assert loaded.system.params == {"omega": 0.7}
    assert loaded.net.config["activation"] == "gelu"
    x = torch.randn(3, 2)
    assert torch.equal(loaded(x, 0.0, 0.1), model.eval()(x, 0.0, 0.1))


def test_file_holds_only_plain_data(tmp_path):
    path = physres.save(_perturbed("resnet"), tmp_path / "m.pt")
    data = torch.load(path, weights_only=True)
    assert data["format"] == "physres-model" and data["format_version"] == 1
    assert data["class"] == "resnet" and isinstance(data["config"], str)


class _Payload:
    """Unpickling this runs ``marker.touch()``: what a malicious model file would do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (type(self.marker).touch, (self.marker,))


def test_pickled_payload_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "executed"
    model = _perturbed("resnet")
    evil = physres.artifacts.payload(model)
    evil["metadata"] = _Payload(marker)
    path = tmp_path / "evil.pt"
    torch.save(evil, path)
    with pytest.raises(FormatError, match="refused by the safe loader, nothing in it was "):
        physres.load(path)
    assert not marker.exists()
    # a plain pickle file (not a torch zip) is refused the same way
    legacy = tmp_path / "legacy.pt"
    legacy.write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(FormatError, match="refused by the safe loader"):
        physres.load(legacy)
    assert not marker.exists()
    # and a pickled model object (the usual torch.save(model) habit)
    whole = tmp_path / "whole.pt"
    torch.save(model, whole)
    with pytest.raises(FormatError, match="not a loadable physres model file"):
        physres.load(whole)


def test_wrong_files_are_refused_with_a_clear_message(tmp_path):
    good = physres.artifacts.payload(_perturbed("resnet"))
    cases = {
        "tag.pt": {**good, "format": "something-else"},
        "version.pt": {**good, "format_version": 99},
        "class.pt": {**good, "class": "no_such_model"},
        "weights.pt": {**good, "state_dict": {}},
    }
    messages = {
        "tag.pt": "is not a physres model file",
        "version.pt": "format version 99",
        "class.pt": "unknown model 'no_such_model'",
        "weights.pt": "Missing key",
    }
    for name, data in cases.items():
        torch.save(data, tmp_path / name)
        with pytest.raises(FormatError, match=messages[name]):
            physres.load(tmp_path / name)
    (tmp_path / "text.pt").write_text("not a model")
    with pytest.raises(FormatError, match="not a loadable physres model file"):
        physres.load(tmp_path / "text.pt")
    truncated = tmp_path / "truncated.pt"
    full = physres.save(_perturbed("resnet"), tmp_path / "full.pt").read_bytes()
    truncated.write_bytes(full[: len(full) // 2])
    with pytest.raises(FormatError):
        physres.load(truncated)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        physres.load(tmp_path / "missing.pt")


def test_save_is_atomic_and_checks_what_it_saves(tmp_path):
    path = tmp_path / "m.pt"
    physres.save(_perturbed("resnet"), path)
    before = path.read_bytes()
    with pytest.raises(TypeError, match="`metadata` must be JSON-serialisable"):
        physres.save(_perturbed("resnet"), path, metadata={"bad": object()})
    with pytest.raises(TypeError, match="`model` must be a physres.models.LearnedStepper"):
        physres.save(torch.nn.Linear(2, 2), path)
    assert path.read_bytes() == before  # a failed save leaves the old file intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]  # no temporary files
    assert zipfile.is_zipfile(path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        physres.save(_perturbed("resnet"), tmp_path / "no" / "dir" / "m.pt")


def test_unregistered_or_unstorable_models_are_refused(tmp_path):
    class Local(physres.models.ResNetEmulator):
        pass

    with pytest.raises(TypeError, match="is not registered"):
        physres.save(Local(state_shape=(2,)), tmp_path / "l.pt")
    model = physres.models.ResNetEmulator(state_shape=(2,), net_options={"init_scale": 0.5})
    model.config["net_options"] = {"init": lambda: 0}  # something JSON cannot hold
    with pytest.raises(TypeError, match="cannot be stored in a model file"):
        physres.save(model, tmp_path / "c.pt")


# --- every field checked, by name; a broken model is refused ---------------------------------
def _validate_cli(model_path, tmp_path, capsys):
    """``physres validate MODEL DATA`` → (exit code, stderr)."""
    from physres.cli import main

    data = tmp_path / "ho.h5"
    if not data.exists():
        physres.data.generate("harmonic_oscillator", data, n_traj=2, t_end=1.0, progress=False)
    code = main(["validate", str(model_path), str(data), "--no-progress"])
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("config", "{not json", "field `config` is not valid JSON"),
        ("config", "5", "field `config` must be a JSON object, got int 5"),
        ("config", "[" * 10_000 + "]" * 10_000, "field `config` is nested 10000 levels deep"),
        ("metadata", '{"a": ' * 10_000 + "1" + "}" * 10_000, "field `metadata` is nested"),
        ("dt", "abc", "field `dt` must be a finite number > 0 or None, got 'abc'"),
        ("dt", float("nan"), "field `dt` must be a finite number > 0"),
        ("class", 3, "field `class` must be a model name"),
        ("training_info", "[1, 2]", "field `training_info` must be a JSON object"),
        ("state_dict", {"w": "text"}, "field `state_dict` must map names to tensors"),
    ],
)
def test_malformed_fields_are_refused_by_name(tmp_path, capsys, field, value, message):
    data = {**physres.artifacts.payload(_perturbed("resnet")), field: value}
    path = tmp_path / "bad.pt"
    torch.save(data, path)
    with pytest.raises(FormatError, match=message.replace("[", r"\[")) as exc:
        physres.load(path)
    assert str(path) in str(exc.value)
    code, err = _validate_cli(path, tmp_path, capsys)
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert str(path) in err and f"`{field}`" in err


def test_non_finite_weights_are_refused(tmp_path, capsys):
    model = _perturbed("resnet")
    broken = physres.artifacts.payload(model)
    key = next(iter(broken["state_dict"]))
    broken["state_dict"][key] = torch.full_like(broken["state_dict"][key], float("nan"))
    path = tmp_path / "nan.pt"
    torch.save(broken, path)
    with pytest.raises(FormatError, match=f"`state_dict` entry '{key}' holds non-finite"):
        physres.load(path)
    code, err = _validate_cli(path, tmp_path, capsys)
    assert code == 2 and "non-finite" in err and str(path) in err and "Traceback" not in err
    loaded = physres.load(path, check_finite=False)  # for inspection only
    assert torch.isnan(loaded.state_dict()[key]).all()
    with torch.no_grad():
        next(model.parameters()).fill_(float("inf"))
    with pytest.raises(ValueError, match="hold non-finite values"):
        physres.save(model, tmp_path / "inf.pt")
    assert not (tmp_path / "inf.pt").exists()


def test_pickle_refusal_does_not_advise_the_unsafe_loader(tmp_path, capsys):
    evil = physres.artifacts.payload(_perturbed("resnet"))
    evil["metadata"] = _Payload(tmp_path / "executed")
    path = tmp_path / "evil.pt"
    torch.save(evil, path)
    with pytest.raises(FormatError) as exc:
        physres.load(path)
    assert "weights_only" not in str(exc.value) and "which is code, not data" in str(exc.value)
    code, err = _validate_cli(path, tmp_path, capsys)
    assert code == 2 and "weights_only" not in err and "nothing in it was executed" in err
    assert not (tmp_path / "executed").exists()


def test_training_info_round_trips(tmp_path):
    model = _perturbed("resnet")
    model.training_info = {"unroll": 4, "schedule": "cosine", "polish": {"method": "lm"}}
    path = physres.save(model, tmp_path / "m.pt")
    loaded = physres.load(path)
    assert loaded.training_info == model.training_info
    x = torch.randn(3, 2)
    assert torch.equal(loaded(x, 0.0, 0.2), model(x, 0.0, 0.2))  # bit for bit still
    assert (
        getattr(
            physres.load(physres.save(_perturbed("resnet"), tmp_path / "n.pt")),
            "training_info",
            None,
        )
        is None
    )
    model.training_info = ["not", "a", "dict"]
    with pytest.raises(TypeError, match="`model.training_info` must be a dict, got list"):
        physres.save(model, tmp_path / "bad.pt")
    deep = inner = {}
    for _ in range(physres.artifacts.MAX_DEPTH + 1):
        inner["k"] = {}
        inner = inner["k"]
    model.training_info = deep
    with pytest.raises(ValueError, match="`model.training_info` is nested"):
        physres.save(model, tmp_path / "deep.pt")


def test_files_get_the_permissions_of_a_plain_open(tmp_path):
    import physres.runner
    import physres.training.checkpoint

    mask = os.umask(0o022)
    try:
        path = physres.save(_perturbed("resnet"), tmp_path / "m.pt")
        data = physres.data.generate(
            "harmonic_oscillator", tmp_path / "d.h5", n_traj=2, t_end=1.0, progress=False
        )
        report, md = physres.runner.write_report(tmp_path / "r", {"a": 1}, "# r\n")
        from matplotlib.figure import Figure

        figure = tmp_path / physres.runner.savefig(Figure(), tmp_path / "f.png")
        model = _perturbed("resnet")
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
        checkpoint = tmp_path / "m.ckpt"
        physres.training.checkpoint.save_checkpoint(
            checkpoint, model, optimizer, scheduler, None, {"step": 0}, {}
        )
    finally:
        os.umask(mask)
    assert physres.training.checkpoint.load_checkpoint(checkpoint)["state"] == {"step": 0}
    for p in (path, data, report, md, figure, checkpoint):
        assert stat.S_IMODE(p.stat().st_mode) == 0o644, p

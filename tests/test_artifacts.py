"""Model files: exact round trips, and refusal of anything that is not a physres model file."""

import pickle
import zipfile

import pytest
import torch

import physres
from physres.errors import FormatError

MODELS = {
    "resnet": dict(state_shape=(2,), depth=3, width=8, learn_scale=True, alpha=0.5, dt=0.2),
    "node": dict(state_shape=(2,), width=8, method="rk4", step_size=0.05, adjoint=True),
    "implicit": dict(state_shape=(2,), width=8, dtype=torch.float64),
    "hybrid": dict(state_shape=(2,), system="pendulum", system_params={"omega": 1.3},
                   coarse="heun", width=8, dt=0.2),
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
    model = physres.models.HybridStepper(state_shape=(2,),
                                         system=physres.systems.get("pendulum", omega=0.7),
                                         net=net, dt=0.1, dtype=torch.float64)
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
    messages = {"tag.pt": "is not a physres model file", "version.pt": "format version 99",
                "class.pt": "unknown model 'no_such_model'", "weights.pt": "Missing key"}
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

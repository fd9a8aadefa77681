"""``physres train``: trains, saves a loadable model, resumes exactly, refuses bad input."""

import csv

import pytest
import torch

import physres
from physres.cli import main


@pytest.fixture(scope="module")
def ho_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "ho.h5"
    physres.data.generate(
        "harmonic_oscillator", path, n_traj=10, t_end=6.0, dt_save=0.05, seed=1, progress=False
    )
    return path


FAST = [
    "--epochs",
    "3",
    "--frame-step",
    "5",
    "--width",
    "16",
    "--batch-size",
    "64",
    "--val-steps",
    "10",
    "--no-progress",
]


def losses(log_prefix):
    with open(f"{log_prefix}.csv") as fh:
        return [float(row["loss"]) for row in csv.DictReader(fh)]


def test_train_writes_a_loadable_model_and_logs(ho_file, tmp_path, capsys):
    out = tmp_path / "m.pt"
    assert main(["train", str(ho_file), "--model", "resnet", "--out", str(out), *FAST]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("trained resnet (dt = 0.25)") and str(out) in line
    model = physres.load(out)
    assert isinstance(model, physres.models.ResNetEmulator) and model.dt == 0.25
    meta = physres.artifacts.metadata(out)
    assert meta["system"] == "harmonic_oscillator" and meta["frame_step"] == 5
    log = losses(tmp_path / "m_train")
    assert len(log) == meta["train"]["steps"] and log[-1] < log[0]
    x = physres.systems.get("harmonic_oscillator").sample_initial(3, seed=9)
    assert physres.rollout(model, x, 0.25, 10).shape == (3, 11, 2)


@pytest.mark.parametrize("kind", ["node", "implicit", "hybrid"])
def test_train_every_model_kind(ho_file, tmp_path, kind):
    out = tmp_path / f"{kind}.pt"
    assert (
        main(["train", str(ho_file), "--model", kind, "--out", str(out), *FAST, "--epochs", "1"])
        == 0
    )
    model = physres.load(out)
    assert type(model).name == kind
    if kind == "hybrid":  # the coarse physics comes from the data file's system
        assert type(model.system).name == "harmonic_oscillator"


def test_interrupt_and_resume_gives_the_same_losses(ho_file, tmp_path, capsys):
    straight = tmp_path / "a.pt"
    assert main(["train", str(ho_file), "--out", str(straight), *FAST]) == 0
    out = tmp_path / "b.pt"
    assert (
        main(
            [
                "train",
                str(ho_file),
                "--out",
                str(out),
                *FAST,
                "--max-steps",
                "4",
                "--checkpoint-every",
                "2",
            ]
        )
        == 0
    )
    assert "continue with --resume" in capsys.readouterr().out
    assert not out.exists()
    assert main(["train", str(ho_file), "--out", str(out), *FAST, "--resume"]) == 0
    assert losses(tmp_path / "b_train") == losses(tmp_path / "a_train")
    x = torch.randn(4, 2)
    assert torch.equal(physres.load(out)(x, 0.0, 0.25), physres.load(straight)(x, 0.0, 0.25))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.h5", "--out", "{tmp}/m.pt"], "data file 'missing.h5' does not exist"),
        (["{data}", "--out", "{tmp}/no/m.pt"], "directory of --out"),
        (["{data}", "--out", "{tmp}/m.pt", "--batch-size", "0"], "`batch_size` must be >= 1"),
        (["{data}", "--out", "{tmp}/m.pt", "--net", "transformer"], "unknown model 'transformer'"),
        (["{data}", "--out", "{tmp}/m.pt", "--resume"], "nothing to resume"),
        (["{data}", "--out", "{tmp}/m.pt", "--frame-step", "1000"], "spans"),
    ],
)
def test_bad_input_is_one_line_without_traceback(ho_file, tmp_path, capsys, args, message):
    argv = ["train"] + [a.format(tmp=tmp_path, data=ho_file) for a in args] + ["--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_unknown_model_kind_is_an_argparse_error(ho_file, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", str(ho_file), "--model", "gpt", "--out", str(tmp_path / "m.pt")])
    assert exc.value.code == 2
    assert "invalid choice: 'gpt'" in capsys.readouterr().err


# --- options generated from TrainConfig; refusals by name -------------------------------------
def test_options_and_defaults_come_from_trainconfig(capsys):
    import dataclasses

    from physres.cli import build_parser, train

    parser = build_parser()
    args = parser.parse_args(["train", "d.h5", "--out", "m.pt"])
    config = train.train_config(args)
    defaults = physres.training.TrainConfig()
    for field in dataclasses.fields(physres.training.TrainConfig):
        if field.name not in ("checkpoint", "log", "resume", "progress"):
            assert getattr(config, field.name) == getattr(defaults, field.name), field.name
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for field in train.config_fields():
        assert train.option(field.name) in text, field.name
    assert f"(default: {defaults.batch_size})" in text and "(default: cosine)" in text
    kinds = physres.models.names(physres.models.LearnedStepper)
    assert "{" + ",".join(kinds) + "}" in text  # model kinds from the registry


def test_every_option_has_help():
    from physres.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    for action in sub.choices["train"]._actions:
        assert action.help and action.help.strip(), action.dest


def test_help_generator_copes_with_fields_without_metadata():
    import dataclasses

    from physres.cli import train

    @dataclasses.dataclass
    class Config:
        """Settings.

        Group
            ``alpha``: the first setting of the group.
        """

        alpha: int = 1
        beta: float = dataclasses.field(default=2.0, metadata={"help": "the second one"})
        gamma: str = dataclasses.field(default="x", metadata={"resume": True})

    fields = {f.name: f for f in dataclasses.fields(Config)}
    doc = Config.__doc__
    assert train.field_help(fields["alpha"], doc) == "Group: alpha: the first setting of the group"
    assert train.field_help(fields["beta"], doc) == "the second one"
    assert train.field_help(fields["gamma"], doc) == "Group: gamma"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--device", "tpu"], "--device must be cpu or cuda (cuda:N), got 'tpu'"),
        (["--batch-size", "0"], "--batch-size: `batch_size` must be >= 1, got 0"),
        (["--lr", "-1"], "--lr: `lr` must be finite and > 0"),
        (["--resume", "--overwrite"], "--resume and --overwrite exclude each other"),
    ],
)
def test_refusals_name_the_option(ho_file, tmp_path, capsys, args, message):
    assert (
        main(["train", str(ho_file), "--out", str(tmp_path / "m.pt"), *args, "--no-progress"]) == 2
    )
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_without_cuda_is_one_line(ho_file, tmp_path, capsys):
    assert (
        main(
            [
                "train",
                str(ho_file),
                "--out",
                str(tmp_path / "m.pt"),
                "--device",
                "cuda",
                "--no-progress",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "CUDA is not available" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_existing_checkpoint_is_not_overwritten_without_a_word(ho_file, tmp_path, capsys):
    out = tmp_path / "m.pt"
    assert main(["train", str(ho_file), "--out", str(out), *FAST, "--epochs", "1"]) == 0
    capsys.readouterr()
    checkpoint = tmp_path / "m.pt.ckpt"
    before = checkpoint.read_bytes()
    assert main(["train", str(ho_file), "--out", str(out), *FAST, "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert str(checkpoint) in err and "--resume" in err and "--overwrite" in err
    assert checkpoint.read_bytes() == before
    assert (
        main(["train", str(ho_file), "--out", str(out), *FAST, "--epochs", "1", "--overwrite"]) == 0
    )


def test_interrupt_message_points_at_resume(ho_file, tmp_path, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(physres.training, "fit", interrupted)
    out = tmp_path / "m.pt"
    assert main(["train", str(ho_file), "--out", str(out), *FAST]) == 130
    err = capsys.readouterr().err
    assert "--resume" in err and f"{out}.ckpt" in err


def test_a_bug_keeps_its_traceback(ho_file, tmp_path, monkeypatch):
    """Only physres's own checks and path errors become one-liners: an error from deep inside
    a library (here a TypeError that no physres check raised) still shows where it came
    from."""

    def buggy(*args, **kwargs):
        return len(5)  # TypeError raised by Python, not by a physres check

    monkeypatch.setattr(physres.training, "fit", buggy)
    with pytest.raises(TypeError, match="has no len"):
        main(["train", str(ho_file), "--out", str(tmp_path / "m.pt"), *FAST])

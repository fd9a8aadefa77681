"""``physres train --config FILE.toml``: TrainConfig fields from a TOML table, options given on
the command line winning, and one-line errors naming the file and the key."""

import pytest

import physres
from physres import _overrides
from physres.cli import build_parser, main
from physres.cli import train as train_cli


def _config(tmp_path, text, *options):
    path = tmp_path / "train.toml"
    path.write_text(text)
    args = build_parser().parse_args(
        ["train", "d.h5", "--out", "m.pt", "--config", str(path), *options]
    )
    return train_cli.train_config(args)


def test_file_sets_fields_and_options_win(tmp_path):
    cfg = _config(
        tmp_path,
        'epochs = 7\nlr = 1\nschedule = "constant"\nfractions = [0.6, 0.2, 0.2]\nbatch_size = 32\n',
        "--batch-size",
        "64",
    )
    assert cfg.epochs == 7 and cfg.lr == 1.0 and isinstance(cfg.lr, float)
    assert cfg.schedule == "constant" and cfg.fractions == (0.6, 0.2, 0.2)
    assert cfg.batch_size == 64  # given on the command line: the option wins
    # an option given with its default value still wins over the file
    assert _config(tmp_path, "epochs = 7\n", "--epochs", "20").epochs == 20
    default = physres.training.TrainConfig()
    assert _config(tmp_path, "").epochs == default.epochs


@pytest.mark.parametrize(
    "text, message",
    [
        ("epoch = 3\n", "unknown key 'epoch' for TrainConfig; valid keys: epochs,"),
        ("checkpoint = 'x'\n", "unknown key 'checkpoint'"),  # set by the command itself
        ("epochs = 'many'\n", "`epochs` must be an int"),
        ("lr = -1.0\n", "`lr`"),  # TrainConfig's own check, attributed to the file
    ],
)
def test_bad_file_is_one_line_naming_the_file(tmp_path, capsys, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    data = tmp_path / "d.h5"
    physres.data.generate("harmonic_oscillator", data, n_traj=4, t_end=1.0, progress=False)
    assert main(["train", str(data), "--out", str(tmp_path / "m.pt"), "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and f"--config {str(path)!r}" in err[0], err
    assert not (tmp_path / "m.pt").exists()


def test_train_from_a_config_file(tmp_path, capsys):
    data = tmp_path / "ho.h5"
    physres.data.generate(
        "harmonic_oscillator", data, n_traj=10, t_end=6.0, dt_save=0.05, seed=1, progress=False
    )
    path = tmp_path / "train.toml"
    path.write_text("epochs = 2\nframe_step = 5\nbatch_size = 64\nval_steps = 10\n")
    out = tmp_path / "m.pt"
    assert (
        main(
            [
                "train",
                str(data),
                "--out",
                str(out),
                "--config",
                str(path),
                "--width",
                "16",
                "--no-progress",
            ]
        )
        == 0
    )
    assert "trained resnet (dt = 0.25)" in capsys.readouterr().out
    meta = physres.artifacts.metadata(out)
    assert meta["frame_step"] == 5 and meta["train"]["epochs_run"] == 2


def test_override_keeps_kinds():
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class C:
        n: int = 1
        flag: bool = False
        pair: tuple = (1, 2)
        name: str = "a"
        maybe: object = None

    c = _overrides.override(C(), {"n": 3, "flag": True, "pair": [4, 5], "maybe": [1]})
    assert c == C(n=3, flag=True, pair=(4, 5), name="a", maybe=(1,))
    for bad in (
        {"n": 1.5},
        {"n": True},
        {"flag": 1},
        {"pair": [1.5]},
        {"name": 3},
        {"n": {"x": 1}},
    ):
        with pytest.raises(ValueError, match=f"`{next(iter(bad))}`"):
            _overrides.override(C(), bad)
    with pytest.raises(TypeError, match="`base`"):
        _overrides.override(C, {})

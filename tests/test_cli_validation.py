"""``physres validate`` and ``physres compare`` from the command line."""

import json

import pytest

import physres
from physres.cli import main


@pytest.fixture(scope="module")
def ho_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "ho.h5"
    physres.data.generate("harmonic_oscillator", path, n_traj=3, t_end=2.0, progress=False)
    return path


def test_compare_writes_the_study_and_prints_the_table(tmp_path, capsys):
    out = tmp_path / "study"
    code = main(
        [
            "compare",
            "harmonic_oscillator",
            "--steppers",
            "euler,rk4,crank_nicolson",
            "--dt",
            "0.1,0.05",
            "0.025",
            "--t-end",
            "2",
            "--param",
            "omega=1",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert code == 0
    text = capsys.readouterr().out
    assert "largest stable dt" in text and "2.828" in text and "0 (unstable)" in text
    metrics = json.loads((out / "report.json").read_text())
    assert metrics["dts"] == [0.1, 0.05, 0.025]
    assert metrics["steppers"]["rk4"]["fitted_order"] == pytest.approx(4, abs=0.2)
    assert (out / "error_vs_dt.png").exists() and (out / "report.md").exists()


def test_validate_a_stepper_name(ho_file, tmp_path, capsys):
    out = tmp_path / "val"
    assert main(["validate", "rk4", str(ho_file), "--out", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "relative L2 error" in text and "rk4" in text
    metrics = json.loads((out / "report.json").read_text())
    assert metrics["relative_l2"]["final_mean"] < 1e-5


def test_validate_a_model_file(ho_file, tmp_path, capsys):
    model = physres.models.get("resnet", state_shape=(2,), dt=0.05, width=8)
    good = physres.save(model, tmp_path / "model.pt", metadata={"system": "harmonic_oscillator"})
    assert main(["validate", str(good), str(ho_file), "--no-progress"]) == 0
    assert "resnet" in capsys.readouterr().out
    wrong = physres.save(model, tmp_path / "pend.pt", metadata={"system": "pendulum"})
    assert main(["validate", str(wrong), str(ho_file), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "system mismatch" in err and "Traceback" not in err
    other = physres.save(
        model,
        tmp_path / "w2.pt",
        metadata={"system": "harmonic_oscillator", "system_params": {"omega": 3.0}},
    )
    assert main(["validate", str(other), str(ho_file), "--no-progress"]) == 2
    assert "parameters differ" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["validate", "rk4", "{missing}"], "no such file"),
        (["validate", "nope", "{data}"], "neither a model file nor a stepper name"),
        (
            ["compare", "harmonic_oscillator", "--steppers", "rk9", "--out", "{out}"],
            "unknown stepper 'rk9'",
        ),
        (
            [
                "compare",
                "harmonic_oscillator",
                "--steppers",
                "rk4",
                "--dt",
                "fast",
                "--out",
                "{out}",
            ],
            "--dt expects numbers",
        ),
        (["compare", "no_such_system", "--steppers", "rk4", "--out", "{out}"], "unknown system"),
    ],
)
def test_bad_input_is_one_line(ho_file, tmp_path, capsys, argv, message):
    argv = [
        a.format(missing=tmp_path / "missing.h5", data=ho_file, out=tmp_path / "o") for a in argv
    ]
    assert main([*argv, "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1

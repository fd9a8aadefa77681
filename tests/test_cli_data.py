"""`physres generate` and `physres info`: in-process through main(), one real subprocess."""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import physres
from physres.cli import main


def test_generate_then_info(tmp_path, capsys):
    out = tmp_path / "vdp.h5"
    code = main(
        [
            "generate",
            "van_der_pol",
            "--out",
            str(out),
            "--n-traj",
            "3",
            "--t-end",
            "2",
            "--dt-save",
            "0.1",
            "--param",
            "mu=5",
            "--seed",
            "4",
            "--rtol",
            "1e-9",
            "--atol",
            "1e-11",
            "--method",
            "Radau",
            "--no-progress",
        ]
    )
    assert code == 0
    assert "wrote" in capsys.readouterr().out
    with physres.data.open(out) as f:
        assert f.system_params == {"mu": 5.0} and f.attrs["seed"] == 4
        assert f.attrs["reference_method"] == "Radau" and f.attrs["rtol"] == 1e-9
        assert f.states.shape == (3, 21, 2)
        system = f.make_system()
        expected = physres.reference.solve(
            system, system.sample_initial(3, seed=4), f.t, method="Radau", rtol=1e-9, atol=1e-11
        )
        np.testing.assert_array_equal(f.states[()], expected)

    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    for piece in (
        "van_der_pol",
        '"mu": 5.0',
        "3 trajectories x 21 times x (2,)",
        "dt_save 0.1",
        "Radau rtol=1e-09",
        "s/trajectory",
    ):
        assert piece in text, piece


def test_generate_workers_and_invariants_in_info(tmp_path, capsys):
    out = tmp_path / "ho.h5"
    assert (
        main(
            [
                "generate",
                "harmonic_oscillator",
                "--out",
                str(out),
                "--n-traj",
                "4",
                "--t-end",
                "1",
                "--workers",
                "2",
                "--no-progress",
            ]
        )
        == 0
    )
    assert main(["info", str(out)]) == 0
    assert "invariant     energy: max relative drift" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["generate", "nope", "--out", "{tmp}/a.h5"], "unknown system 'nope'"),
        (["generate", "pendulum", "--out", "{tmp}/a.h5", "--param", "omega=-2"], "`omega`"),
        (["generate", "pendulum", "--out", "{tmp}/a.h5", "--param", "omega"], "key=value"),
        (["generate", "pendulum", "--out", "{tmp}/missing/a.h5"], "does not exist"),
        (["generate", "pendulum", "--out", "{tmp}"], "is a directory"),
        (["generate", "pendulum", "--out", "{tmp}/a.h5", "--n-traj", "0"], "`n_traj`"),
        (["generate", "pendulum", "--out", "{tmp}/a.h5", "--method", "euler"], "`method`"),
        (["info", "{tmp}/missing.h5"], "no such file"),
        (["info", "{tmp}/garbage.h5"], "not a readable HDF5 file"),
    ],
)
def test_bad_input_one_line_nonzero(tmp_path, capsys, argv, message):
    (tmp_path / "garbage.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 100)
    code = main([a.replace("{tmp}", str(tmp_path)) for a in argv])
    err = capsys.readouterr().err
    assert code != 0
    assert message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_info_refuses_truncated_file(tmp_path, capsys):
    out = tmp_path / "ho.h5"
    physres.data.generate("harmonic_oscillator", out, n_traj=3, progress=False)
    data = out.read_bytes()
    (tmp_path / "cut.h5").write_bytes(data[: len(data) * 2 // 3])
    assert main(["info", str(tmp_path / "cut.h5")]) == 2
    err = capsys.readouterr().err
    assert "cut.h5" in err and "truncated" in err and len(err.strip().splitlines()) == 1


def _command() -> list[str]:
    """The installed ``physres`` script (or the same entry point through the interpreter)."""
    script = shutil.which("physres", path=str(Path(sys.executable).parent))
    return (
        [script]
        if script
        else [sys.executable, "-c", "import sys; from physres.cli import main; sys.exit(main())"]
    )


def test_subprocess_generate(tmp_path):
    out = tmp_path / "lv.h5"
    ok = subprocess.run(
        [
            *_command(),
            "generate",
            "lotka_volterra",
            "--out",
            str(out),
            "--n-traj",
            "2",
            "--t-end",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ok.returncode == 0, ok.stderr
    assert "generate lotka_volterra" in ok.stderr  # the progress bar
    with physres.data.open(out) as f:
        assert f.states.shape == (2, 21, 2)


def test_info_refuses_states_that_do_not_fit_the_system(tmp_path, capsys):
    """A file whose /states disagree with the system its attributes name (rebuilt from
    `system` and `system_params`): refused by name, with and without --no-verify."""
    import h5py

    good = tmp_path / "ho.h5"
    physres.data.generate("harmonic_oscillator", good, n_traj=2, t_end=1.0, progress=False)
    bad = tmp_path / "bad.h5"
    shutil.copy(good, bad)
    with h5py.File(bad, "r+") as f:
        states = f["states"][()]
        del f["states"]
        f["states"] = np.concatenate([states, states[..., :1]], axis=-1)  # (2, n_t, 3)
    for extra in ([], ["--no-verify"]):
        assert main(["info", str(bad), *extra]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
        assert str(bad) in err and "state shape (3,)" in err and "state_shape (2,)" in err
    wrong_params = tmp_path / "params.h5"
    shutil.copy(good, wrong_params)
    with h5py.File(wrong_params, "r+") as f:
        f.attrs["system_params"] = '{"omega": -1}'
    assert main(["info", str(wrong_params)]) == 2
    err = capsys.readouterr().err
    assert "`system_params`" in err and str(wrong_params) in err
    assert main(["info", str(good)]) == 0


def test_generate_takes_the_output_file_as_argument_or_option(tmp_path, capsys):
    """``physres generate SYSTEM FILE`` and ``--out FILE`` write the same file; both or
    neither is a one-line error."""
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    common = ["--n-traj", "2", "--t-end", "0.5", "--no-progress"]
    assert main(["generate", "harmonic_oscillator", str(a), *common]) == 0
    assert main(["generate", "harmonic_oscillator", "--out", str(b), *common]) == 0
    with physres.data.open(a) as fa, physres.data.open(b) as fb:
        np.testing.assert_array_equal(fa.states[:], fb.states[:])
    capsys.readouterr()
    for argv in (
        ["generate", "harmonic_oscillator", *common],
        ["generate", "harmonic_oscillator", str(a), "--out", str(b), *common],
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "`--out FILE`" in err[0], err

"""The output floor: JSON scrubbing, tables, bare-Figure PNGs, all written atomically."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from physres import _output


def test_jsonable_converts_and_scrubs_in_one_place():
    doc = {
        "a": np.float32(1.5),
        "b": torch.tensor([1.0, float("inf")]),
        "c": np.arange(2),
        "z": 1 + 2j,
        "p": Path("x/y"),
        3: (np.int64(4), None),
        "ok": np.bool_(True),
        "nan": float("nan"),
    }
    assert _output.jsonable(doc) == {
        "a": 1.5,
        "b": [1.0, None],
        "c": [0, 1],
        "z": [1.0, 2.0],
        "p": "x/y",
        "3": [4, None],
        "ok": True,
        "nan": None,
    }
    with pytest.raises(ValueError, match=r"`report`: report\['b'\]\[1\] is inf"):
        _output.jsonable(doc, nonfinite="raise", where="report")
    with pytest.raises(TypeError, match=r"doc\['o'\] has type object"):
        _output.jsonable({"o": object()}, where="doc")
    with pytest.raises(ValueError, match="`nonfinite`"):
        _output.jsonable({}, nonfinite="drop")


def test_objects_with_to_dict_are_written_through_it():
    class Record:
        def to_dict(self):
            return {"x": float("nan"), "y": np.float64(2.0)}

    assert _output.jsonable([Record()]) == [{"x": None, "y": 2.0}]


def test_write_json_refuses_before_writing(tmp_path):
    path = _output.write_json(tmp_path / "r.json", {"a": [1.0, np.nan]})
    assert path.read_text().endswith("\n")
    assert json.loads(path.read_text()) == {"a": [1.0, None]}
    with pytest.raises(ValueError, match=r"r\['a'\] is nan"):
        _output.write_json(path, {"a": np.nan}, nonfinite="raise", where="r")
    assert json.loads(path.read_text()) == {"a": [1.0, None]}  # the old file is intact
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temporaries left
    with pytest.raises(TypeError, match="`text`"):
        _output.write_text(tmp_path / "t.md", None)


def test_tables_share_one_cell_format():
    rows = [
        {"stepper": "rk4", "error": 1.23456e-7, "stable": True},
        {"stepper": "euler|x", "wall": None},
    ]
    text = _output.text_table(rows).splitlines()
    assert text[0].split() == ["stepper", "error", "stable", "wall"]
    assert set(text[1]) == {"-", " "}
    assert text[2].split() == ["rk4", "1.235e-07", "True", "—"]
    assert text[3].split() == ["euler|x", "—", "—", "—"]
    assert text[0].index("error") == text[2].index("1.235e-07")  # columns are aligned
    md = _output.markdown_table(rows).splitlines()
    assert md[0] == "| stepper | error | stable | wall |"
    assert md[3] == "| euler\\|x | — | — | — |"
    assert _output.text_table([["a", "b"], [1, 2.0]]).splitlines()[2].split() == ["1", "2"]
    assert _output.text_table([]) == "(no rows)" and _output.markdown_table([]) == ""
    with pytest.raises(TypeError, match="`rows`"):
        _output.text_table([1, 2])


def test_figures_are_bare_and_written_atomically(tmp_path):
    from matplotlib.figure import Figure
    from matplotlib.image import imread

    fig, axes = _output.subplots(1, 2, figsize=(4.0, 2.0), sharey=True)
    assert isinstance(fig, Figure) and axes.shape == (2,)
    fig2, ax = _output.subplots(squeeze=False)
    assert ax.shape == (1, 1)
    axes[0].plot([0, 1], [0, 1])
    path = _output.save_figure(fig, tmp_path / "f.png", dpi=50)
    assert imread(path).shape[:2] == (100, 200)  # figsize × dpi
    assert [p.name for p in tmp_path.iterdir()] == ["f.png"]
    mask = os.umask(0o022)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask


def test_scenario_helpers_draw_without_pyplot(tmp_path):
    from matplotlib.figure import Figure

    from physres import _output, runner

    plt = _output.PyplotLike()
    assert "axes.prop_cycle" in plt.rcParams
    ctx = runner.Context(name="s", out=tmp_path)
    fig, ax = ctx.subplots(figsize=(3, 2))
    assert isinstance(fig, Figure) and ax.figure is fig
    assert ctx.save_figure(fig, "s.png") == "s.png" and ctx.figures == ["s.png"]
    assert (tmp_path / "s.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_no_library_path_imports_pyplot_or_switches_backend(tmp_path):
    # the report writers, the scenario helpers and the stability figure touch no global state
    code = f"""
import sys
import matplotlib
backend = matplotlib.rcParams._get_backend_or_none()
import physres, physres.runner, physres.validation
out = {str(tmp_path)!r}
physres.validation.plot_stability_regions(["euler", "rk4"], out + "/r.png", resolution=41)
c = physres.validation.compare_steppers("harmonic_oscillator", ["euler"], dts=[0.1],
                                        t_end=0.5, progress=False, stability=False)
c.save(out + "/cmp")
fig, ax = physres.runner.Context.subplots()
physres.runner.savefig(fig, out + "/s.png")
assert "matplotlib.pyplot" not in sys.modules, "pyplot was imported"
assert matplotlib.rcParams._get_backend_or_none() == backend, "the backend was switched"
print("clean")
"""
    env = {
        **os.environ,
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
        "OMP_NUM_THREADS": "1",
        "MPLBACKEND": "",
    }
    env.pop("MPLBACKEND")
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "clean"
    assert {p.name for p in (tmp_path / "cmp").iterdir()} >= {
        "report.json",
        "report.md",
        "error_vs_dt.png",
    }


def test_training_logs_are_written_through_the_atomic_writer(tmp_path):
    from physres.training.log import write_logs

    history = [{"step": 1, "epoch": 0, "unroll": 1, "lr": 1e-3, "loss": 0.5}]
    mask = os.umask(0o022)
    try:
        write_logs(tmp_path / "log", history, [{"step": 1, "val_error": 0.25}], {"best": 1})
    finally:
        os.umask(mask)
    csv = (tmp_path / "log.csv").read_text().splitlines()
    assert csv[0] == "step,epoch,unroll,lr,loss,val_error"
    assert csv[1].split(",")[-1] == "2.500000e-01"
    assert json.loads((tmp_path / "log.json").read_text())["best"] == 1
    assert (tmp_path / "log.json").stat().st_mode & 0o777 == 0o644  # not mkstemp's 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.csv", "log.json"]

"""`physres run`, `physres run --list`, `--config`, `--device` and the runner (discovery, the
report header, report.json / report.md, figures, the device record)."""

import json
import math
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import physres.training
from physres import _output, runner
from physres._version import __version__
from physres.cli import main

TOY = '''
"""A toy scenario for the runner's tests."""
from dataclasses import dataclass

import torch

from physres import runner

SUMMARY = "toy: writes a report and one figure"


@dataclass(frozen=True)
class Config:
    width: int
    lr: float
    sizes: tuple[int, ...] = (1, 2)
    label: str = "toy"


QUICK = Config(width=4, lr=0.5)
FULL = Config(width=64, lr=0.1, sizes=(8, 16))


def run(cfg: Config, ctx: runner.Context):
    with ctx.phase("network"):
        net = ctx.model(torch.nn.Linear(2, cfg.width))
    with ctx.phase("network"):  # a phase timed twice adds up
        x = ctx.tensor([[1.0, 2.0]])
    fig, ax = ctx.subplots()
    ax.plot([0, 1], [0, 1])
    ctx.save_figure(fig, "line.png")
    report = {"value": 0.5, "width": net(x).shape[-1],
              "summary": [{"stepper": "toy", "error": 1.25e-3}]}
    return report, "# Toy\\n\\nBody text."


if __name__ == "__main__":
    runner.script(__file__)
'''


@pytest.fixture
def toy_dir(tmp_path, monkeypatch):
    d = tmp_path / "extra_scenarios"
    d.mkdir()
    (d / "toy_scenario.py").write_text(TOY)
    monkeypatch.setenv(runner.ENV_VAR, str(d))
    return d


def test_list_shows_every_scenario_with_its_summary(toy_dir, capsys):
    assert main(["run", "--list"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    names = runner.list_scenarios()
    assert "toy_scenario" in names and "depth" in names  # env var dir and the shipped ones
    assert [line.split()[0] for line in lines] == names
    toy = next(line for line in lines if line.startswith("toy_scenario"))
    assert toy.split(None, 1)[1] == "toy: writes a report and one figure"


def test_shipped_scenarios_are_the_checkout_folder(monkeypatch):
    monkeypatch.delenv(runner.ENV_VAR, raising=False)
    shipped = runner.shipped_dir()
    assert (shipped / "__init__.py").is_file()
    assert runner.scenario_dirs() == [shipped.resolve()]
    assert set(runner.list_scenarios()) >= {
        "chain_fold",
        "depth",
        "kohn_sham",
        "lorenz",
        "oscillator",
        "stiff",
        "wavepacket",
    }


def test_every_shipped_scenario_declares_only_the_contract(monkeypatch):
    monkeypatch.delenv(runner.ENV_VAR, raising=False)
    for name in runner.list_scenarios():
        module = runner.load_scenario(name)
        assert module.__doc__ and module.SUMMARY.strip(), name
        assert module.Config.__dataclass_params__.frozen, name
        assert isinstance(module.QUICK, module.Config) and isinstance(module.FULL, module.Config)
        assert not hasattr(module, "main"), name  # the runner owns the command line
        text = runner.scenario_path(name).read_text()
        for boilerplate in (
            "write_report",
            "cpu_threads",
            "time.perf_counter() - start",
            "torch.cuda.is_available",
            "matplotlib.use",
            "pyplot",
        ):
            assert boilerplate not in text, (name, boilerplate)


def test_unknown_name_is_one_clear_line(toy_dir, capsys):
    assert main(["run", "no_such_scenario"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "unknown scenario 'no_such_scenario'" in err[0]
    assert "toy_scenario" in err[0] and "depth" in err[0]  # lists the valid names


def test_missing_name_is_an_error(capsys):
    assert main(["run"]) == 2
    assert "--list" in capsys.readouterr().err


def test_run_writes_the_report_with_its_header(toy_dir, tmp_path, capsys):
    out = tmp_path / "run_out"
    assert (
        main(
            [
                "run",
                "toy_scenario",
                "--quick",
                "--out",
                str(out),
                "--device",
                "cpu",
                "--no-progress",
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "stepper" in text and "0.00125" in text  # closing table
    assert str(out / "report.md") in text and "line.png" in text
    report = json.loads((out / "report.json").read_text())
    wall = report.pop("wall_s")
    assert math.isfinite(wall) and wall > 0  # recorded; its size is not a test (benchmarks/)
    phases = report.pop("phase_s")  # the blocks timed by ctx.phase, inside the run's time
    assert list(phases) == ["network"] and 0 < phases["network"] <= wall
    assert report == {
        "scenario": "toy_scenario",
        "quick": True,
        "preset": "quick",
        "device": "cpu",
        "physres": __version__,
        "config": {"width": 4, "lr": 0.5, "sizes": [1, 2], "label": "toy"},
        "value": 0.5,
        "width": 4,
        "summary": [{"stepper": "toy", "error": 1.25e-3}],
        "figures": ["line.png"],
        "placement": {"counts": {"model": 1, "tensor": 1}, "devices": ["cpu"]},
    }
    md = (out / "report.md").read_text()
    assert md.startswith("# Toy\n\n| scenario | preset | device | physres | wall time |")
    assert "`toy_scenario`" in md and f"| {__version__} |" in md
    assert "`width` = 4, `lr` = 0.5" in md and md.rstrip().endswith("Body text.")
    assert (out / "line.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_full_preset_without_quick(toy_dir, tmp_path):
    report = runner.run_scenario("toy_scenario", tmp_path / "o", device="cpu", progress=False)
    assert report["preset"] == "full" and report["quick"] is False
    assert report["config"]["width"] == 64 and report["width"] == 64


def test_default_out_is_runs_name(toy_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["run", "toy_scenario", "--device", "cpu", "--no-progress"]) == 0
    assert (tmp_path / "runs" / "toy_scenario" / "report.json").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_a_one_line_error_naming_device(toy_dir, tmp_path, capsys):
    assert main(["run", "toy_scenario", "--device", "cuda", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--device" in err[0] and "CUDA is not available" in err[0]
    assert not (tmp_path / "o").exists()


def test_device_auto_and_unknown():
    assert runner.resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="`--device`"):
        runner.resolve_device("tpu")


def test_a_model_left_off_the_device_is_caught(tmp_path, monkeypatch):
    # ctx.fit records where training left the model: a training that ignored --device (here
    # one that puts it on "meta", the only other device of a CPU-only machine) fails the run
    (tmp_path / "stray.py").write_text(
        TOY.replace(
            "x = ctx.tensor([[1.0, 2.0]])",
            "ctx.fit(torch.nn.Linear(2, 2), 'unused.h5', 10)\n    x = ctx.tensor([[1.0, 2.0]])",
        )
    )
    monkeypatch.setenv(runner.ENV_VAR, str(tmp_path))
    seen = {}

    def training_that_ignores_the_device(model, data, steps, **options):
        seen.update(options)
        model.to("meta")

    monkeypatch.setattr(physres.training, "fit_for_steps", training_that_ignores_the_device)
    with pytest.raises(RuntimeError, match="not on --device cpu.*Linear.*meta"):
        runner.run_scenario("stray", tmp_path / "o", device="cpu", progress=False)
    assert seen == {"device": "cpu", "progress": False}


def test_ctx_places_models_and_tensors_on_the_device(tmp_path):
    ctx = runner.Context(name="t", out=tmp_path, device="cpu")
    net = ctx.model(torch.nn.Linear(2, 3, dtype=torch.float64))
    x = ctx.tensor(np.ones(3), torch.float32)
    assert next(net.parameters()).device.type == "cpu"
    assert x.device.type == "cpu" and x.dtype == torch.float32
    assert [r["devices"] for r in ctx.placement] == [["cpu"], ["cpu"]] and not ctx.misplaced()


def test_scenario_file_runs_as_a_script(toy_dir, tmp_path):
    out = tmp_path / "script_out"
    proc = subprocess.run(
        [
            sys.executable,
            str(toy_dir / "toy_scenario.py"),
            "--quick",
            "--out",
            str(out),
            "--device",
            "cpu",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "report.md" in proc.stdout
    report = json.loads((out / "report.json").read_text())
    assert report["quick"] is True and report["scenario"] == "toy_scenario"
    # the same command line as `physres run`, errors included
    bad = subprocess.run(
        [sys.executable, str(toy_dir / "toy_scenario.py"), "--device", "tpu"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "--device" in bad.stderr


def test_run_config_toml_overrides_the_preset(toy_dir, tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("width = 3\nlr = 1\nsizes = [5, 6, 7]\n")
    out = tmp_path / "o"
    assert (
        main(
            [
                "run",
                "toy_scenario",
                "--quick",
                "--config",
                str(cfg),
                "--out",
                str(out),
                "--no-progress",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    report = json.loads((out / "report.json").read_text())
    assert report["config"] == {"width": 3, "lr": 1.0, "sizes": [5, 6, 7], "label": "toy"}
    assert report["width"] == 3 and report["preset"] == "quick"
    assert report["config_overrides"] == {"width": 3, "lr": 1, "sizes": [5, 6, 7]}
    assert (
        "Changed from the quick preset by `--config`: `width`, `lr`, `sizes`."
        in (out / "report.md").read_text()
    )


@pytest.mark.parametrize(
    "text, message",
    [
        ("depth = 3\n", "unknown key 'depth' for Config; valid keys: width, lr, sizes, label"),
        ("width = 'wide'\n", "`width` must be int like 4, got 'wide'"),
        ("sizes = 3\n", "`sizes` must be an array"),
        ("width = [\n", "is not valid TOML"),
    ],
)
def test_run_config_errors_are_one_line(toy_dir, tmp_path, capsys, text, message):
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    assert (
        main(
            [
                "run",
                "toy_scenario",
                "--quick",
                "--config",
                str(cfg),
                "--out",
                str(tmp_path / "o"),
                "--device",
                "cpu",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and "--config" in err[0], err
    assert not (tmp_path / "o").exists()


def test_missing_config_file(toy_dir, tmp_path, capsys):
    assert main(["run", "toy_scenario", "--config", str(tmp_path / "none.toml")]) == 2
    assert "--config file" in capsys.readouterr().err


def test_env_var_directory_takes_precedence(tmp_path, monkeypatch):
    d = tmp_path / "override"
    d.mkdir()
    (d / "depth.py").write_text(TOY.replace(SUMMARY_LINE, 'SUMMARY = "overridden depth"'))
    monkeypatch.setenv(runner.ENV_VAR, str(d))
    assert runner.scenario_summary("depth") == "overridden depth"
    assert runner.scenario_path("depth") == (d / "depth.py").resolve()
    assert runner.load_scenario("depth").QUICK.width == 4


SUMMARY_LINE = 'SUMMARY = "toy: writes a report and one figure"'


def test_load_scenario_requires_the_declaration(tmp_path, monkeypatch):
    (tmp_path / "broken.py").write_text('SUMMARY = "no run here"\n')
    (tmp_path / "old.py").write_text(
        textwrap.dedent("""
        SUMMARY = "the old protocol"
        def main(out, quick=False, device=None, progress=True):
            return {}
    """)
    )
    monkeypatch.setenv(runner.ENV_VAR, str(tmp_path))
    for name in ("broken", "old"):
        with pytest.raises(TypeError, match="must define SUMMARY, a Config"):
            runner.load_scenario(name)
    with pytest.raises(TypeError, match="`name`"):
        runner.load_scenario(3)


def test_write_report_converts_and_refuses_non_finite(tmp_path):
    report = {
        "a": np.float32(1.5),
        "b": torch.tensor([1.0, 2.0]),
        "c": np.arange(3),
        "d": None,
        "nested": {"x": [np.int64(4)]},
    }
    json_path, md_path = runner.write_report(tmp_path, report, "# title")
    assert json.loads(json_path.read_text()) == {
        "a": 1.5,
        "b": [1.0, 2.0],
        "c": [0, 1, 2],
        "d": None,
        "nested": {"x": [4]},
    }
    assert md_path.read_text() == "# title\n"
    with pytest.raises(ValueError, match=r"report\['nested'\]\['x'\]\[1\] is nan"):
        runner.write_report(tmp_path, {"nested": {"x": [1.0, float("nan")]}}, "")
    with pytest.raises(TypeError, match="`markdown`"):
        runner.write_report(tmp_path, {}, None)
    # the failed writes left the earlier report intact and no temporary files behind
    assert json.loads(json_path.read_text())["a"] == 1.5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json", "report.md"]


def test_summary_table_aligns_columns():
    text = _output.text_table(
        [
            {"stepper": "rk4", "error": 1.5e-7, "stable": True},
            {"stepper": "backward_euler", "error": 0.25},
        ]
    )
    lines = text.splitlines()
    assert lines[0].split() == ["stepper", "error", "stable"]
    assert set(lines[1].replace(" ", "")) == {"-"}
    assert lines[2].split() == ["rk4", "1.5e-07", "True"]
    assert lines[3].split() == ["backward_euler", "0.25", "—"]  # missing cell
    # every column starts at the same offset on every line
    col = lines[0].index("error")
    assert all(line[col - 2 : col] == "  " for line in lines[2:])
    assert _output.text_table([["a", "b"], [1, 2.0]]).splitlines()[2].split() == ["1", "2"]
    assert _output.markdown_table([{"a": 1}]) == "| a |\n|---|\n| 1 |"
    with pytest.raises(TypeError, match="`rows`"):
        _output.text_table([1, 2])


def test_the_documented_example_scenario_runs(tmp_path, monkeypatch):
    # docs/scenarios.md shows a whole scenario file: it runs as written and its claim holds
    text = (Path(__file__).resolve().parents[1] / "docs" / "scenarios.md").read_text()
    code = re.search(r"```python\n(\"\"\"Decay.*?)```", text, re.S).group(1)
    (tmp_path / "decay.py").write_text(code)
    monkeypatch.setenv(runner.ENV_VAR, str(tmp_path))
    report = runner.run_scenario("decay", tmp_path / "o", quick=True, device="cpu", progress=False)
    errors = [row["error"] for row in report["summary"]]
    # euler on y' = -y is first order: halving dt halves the error at t = 2, up to O(dt)
    assert all(1.8 < a / b < 2.2 for a, b in zip(errors, errors[1:], strict=False))
    assert report["figures"] == ["decay_error.png"] and report["placement"]["devices"] == ["cpu"]
    assert (tmp_path / "o" / "report.md").read_text().startswith("# Decay")

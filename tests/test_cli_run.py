"""`physres run`, `physres run --list` and the scenario helpers (discovery, reports, tables)."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from physres import scenarios
from physres.cli import main

TOY = '''
"""A toy scenario for the runner's tests."""
SUMMARY = "toy: writes a report and one figure"


def main(out, quick=False, device=None, progress=True):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from physres.scenarios import write_report
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    fig.savefig(out / "line.png")
    plt.close(fig)
    report = {"quick": quick, "device": device, "value": 0.5,
              "summary": [{"stepper": "toy", "error": 1.25e-3}]}
    write_report(out, report, "# Toy\\n")
    return report


if __name__ == "__main__":
    from physres.scenarios import cli
    cli(main)
'''


@pytest.fixture
def toy_dir(tmp_path, monkeypatch):
    d = tmp_path / "extra_scenarios"
    d.mkdir()
    (d / "toy_scenario.py").write_text(TOY)
    monkeypatch.setenv(scenarios.ENV_VAR, str(d))
    return d


def test_list_shows_every_scenario_with_its_summary(toy_dir, capsys):
    assert main(["run", "--list"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    names = scenarios.list_scenarios()
    assert "toy_scenario" in names and "depth" in names  # env var dir and the repository's
    assert [line.split()[0] for line in lines] == names
    toy = next(line for line in lines if line.startswith("toy_scenario"))
    assert toy.split(None, 1)[1] == "toy: writes a report and one figure"


def test_unknown_name_is_one_clear_line(toy_dir, capsys):
    assert main(["run", "no_such_scenario"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "unknown scenario 'no_such_scenario'" in err[0]
    assert "toy_scenario" in err[0] and "depth" in err[0]  # lists the valid names


def test_missing_name_is_an_error(capsys):
    assert main(["run"]) == 2
    assert "--list" in capsys.readouterr().err


def test_run_writes_under_out_and_prints_the_summary(toy_dir, tmp_path, capsys):
    out = tmp_path / "run_out"
    assert main(["run", "toy_scenario", "--quick", "--out", str(out), "--device", "cpu",
                 "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "stepper" in text and "0.00125" in text  # closing table
    assert str(out / "report.md") in text and "line.png" in text
    report = json.loads((out / "report.json").read_text())
    assert report == {"quick": True, "device": "cpu", "value": 0.5,
                      "summary": [{"stepper": "toy", "error": 1.25e-3}]}


def test_default_out_is_runs_name(toy_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["run", "toy_scenario", "--device", "cpu", "--no-progress"]) == 0
    assert (tmp_path / "runs" / "toy_scenario" / "report.json").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_a_clear_error(toy_dir, tmp_path, capsys):
    assert main(["run", "toy_scenario", "--device", "cuda", "--out", str(tmp_path / "o")]) == 2
    assert "CUDA is not available" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_scenario_file_runs_as_a_script(toy_dir, tmp_path):
    out = tmp_path / "script_out"
    proc = subprocess.run([sys.executable, str(toy_dir / "toy_scenario.py"), "--quick",
                           "--out", str(out), "--device", "cpu"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "report.md" in proc.stdout
    assert json.loads((out / "report.json").read_text())["quick"] is True


def test_env_var_directory_takes_precedence(tmp_path, monkeypatch):
    d = tmp_path / "override"
    d.mkdir()
    (d / "depth.py").write_text(textwrap.dedent('''
        SUMMARY = "overridden depth"
        def main(out, quick=False, device=None, progress=True):
            return {}
    '''))
    monkeypatch.setenv(scenarios.ENV_VAR, str(d))
    assert scenarios.scenario_summary("depth") == "overridden depth"
    assert scenarios.load_scenario("depth").main(None) == {}


def test_load_scenario_requires_main(tmp_path, monkeypatch):
    (tmp_path / "broken.py").write_text('SUMMARY = "no main here"\n')
    monkeypatch.setenv(scenarios.ENV_VAR, str(tmp_path))
    with pytest.raises(TypeError, match="must define main"):
        scenarios.load_scenario("broken")
    with pytest.raises(TypeError, match="`name`"):
        scenarios.load_scenario(3)


def test_write_report_converts_and_refuses_non_finite(tmp_path):
    report = {"a": np.float32(1.5), "b": torch.tensor([1.0, 2.0]), "c": np.arange(3),
              "d": None, "nested": {"x": [np.int64(4)]}}
    json_path, md_path = scenarios.write_report(tmp_path, report, "# title")
    assert json.loads(json_path.read_text()) == {"a": 1.5, "b": [1.0, 2.0], "c": [0, 1, 2],
                                                 "d": None, "nested": {"x": [4]}}
    assert md_path.read_text() == "# title\n"
    with pytest.raises(ValueError, match=r"report\['nested'\]\['x'\]\[1\] is nan"):
        scenarios.write_report(tmp_path, {"nested": {"x": [1.0, float("nan")]}}, "")
    with pytest.raises(TypeError, match="`markdown`"):
        scenarios.write_report(tmp_path, {}, None)
    # the failed writes left the earlier report intact and no temporary files behind
    assert json.loads(json_path.read_text())["a"] == 1.5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json", "report.md"]


def test_summary_table_aligns_columns():
    text = scenarios.summary_table([{"stepper": "rk4", "error": 1.5e-7, "stable": True},
                                    {"stepper": "backward_euler", "error": 0.25}])
    lines = text.splitlines()
    assert lines[0].split() == ["stepper", "error", "stable"]
    assert set(lines[1].replace(" ", "")) == {"-"}
    assert lines[2].split() == ["rk4", "1.5e-07", "True"]
    assert lines[3].split() == ["backward_euler", "0.25", "—"]  # missing cell
    # every column starts at the same offset on every line
    col = lines[0].index("error")
    assert all(line[col - 2:col] == "  " for line in lines[2:])
    assert scenarios.summary_table([["a", "b"], [1, 2.0]]).splitlines()[2].split() == ["1", "2"]
    assert scenarios.markdown_table([{"a": 1}]) == "| a |\n|---|\n| 1 |"
    with pytest.raises(TypeError, match="`rows`"):
        scenarios.summary_table([1, 2])

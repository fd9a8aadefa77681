"""The wheel carries the scenarios: pyproject.toml lists every package (the shipped scenarios,
the top-level scenarios/ folder, as ``physres.scenarios``), and a wheel built from the
checkout and installed into a fresh virtual environment lists and runs them."""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = {"chain_fold", "depth", "kohn_sham", "lorenz", "oscillator", "stiff", "wavepacket"}


def _venv_with_deps(tmp: Path):
    """A fresh venv without pip whose dependencies come from this interpreter's site-packages
    (a .pth file): returns (venv, its python, its purelib)."""
    venv = tmp / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120
    )
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(purelib, "_physres_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv, python, purelib


def test_pyproject_lists_every_package():
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    in_tree = {
        ".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "physres").rglob("__init__.py")
    }
    assert set(setuptools["packages"]) == in_tree | {"physres.scenarios"}
    assert setuptools["package-dir"] == {"physres.scenarios": "scenarios"}
    assert (ROOT / "scenarios" / "__init__.py").is_file()
    assert {p.stem for p in (ROOT / "scenarios").glob("*.py")} >= SHIPPED


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A fresh venv with the wheel of this checkout installed; its dependencies (torch, ...)
    come from the running interpreter's site-packages through a .pth file."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"  # a copy, so the build leaves nothing in the checkout
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    for name in ("physres", "scenarios"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    env = _env()
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp / "dist"), str(src)],
        check=True,
        env=env,
        capture_output=True,
        timeout=300,
    )
    wheel = next((tmp / "dist").glob("physres-*.whl"))
    venv, python, purelib = _venv_with_deps(tmp)
    subprocess.run(
        [*pip, "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)],
        check=True,
        env=env,
        capture_output=True,
        timeout=300,
    )
    return venv, Path(purelib)


def _env() -> dict:
    """No PYTHONPATH (it would put the checkout's physres first), one thread."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PHYSRES_SCENARIOS")}
    return {**env, "OMP_NUM_THREADS": "1"}


def test_wheel_lists_the_shipped_scenarios(installed, tmp_path):
    venv, purelib = installed
    physres = str(venv / "bin" / "physres")
    listed = subprocess.run(
        [physres, "run", "--list"],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=tmp_path,
        timeout=300,
    )
    assert listed.returncode == 0, listed.stderr
    assert {line.split()[0] for line in listed.stdout.splitlines()} == SHIPPED
    # listed from the installed copy: no PYTHONPATH, no checkout in sight
    shipped = purelib / "physres" / "scenarios"
    assert {p.stem for p in shipped.glob("*.py")} == SHIPPED | {"__init__"}
    assert not (purelib / "scenarios").exists()  # no top-level package named "scenarios"


@pytest.mark.slow  # about 20 s idle, 90 s on a loaded machine: mostly importing torch
def test_wheel_runs_a_shipped_scenario(installed, tmp_path):
    venv, _ = installed
    physres = str(venv / "bin" / "physres")
    # depth, the quickest, at a size of seconds (--config shrinks the quick preset)
    tiny = tmp_path / "tiny.toml"
    tiny.write_text(
        "depths = [4, 8]\nwidth = 8\nseeds = 1\nsteps = 5\nn_train = 64\n"
        "n_test = 64\ntied_hidden = 8\ntied_depth = 4\ntied_steps = 5\n"
        "ode_depths = [4, 8, 16, 32]\ndelete_depth = 4\ndelete_steps = 5\n"
        "delete_subsets = 2\n"
    )
    out = tmp_path / "depth"
    done = subprocess.run(
        [
            physres,
            "run",
            "depth",
            "--quick",
            "--config",
            str(tiny),
            "--out",
            str(out),
            "--device",
            "cpu",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=tmp_path,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["scenario"] == "depth" and report["config"]["depths"] == [4, 8]
    assert report["config_overrides"]["steps"] == 5 and report["device"] == "cpu"
    assert {f.name for f in out.glob("*.png")} == set(report["figures"]) and report["figures"]
    assert (out / "report.md").read_text().startswith("# Depth")


@pytest.mark.slow  # an editable install of a copy of the checkout, like `make install`
def test_editable_install_runs_the_checkout_scenarios(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    for name in ("physres", "scenarios"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    venv, python, purelib = _venv_with_deps(tmp_path)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "-q",
            "--python",
            str(python),
            "install",
            "--no-deps",
            "--no-build-isolation",
            "-e",
            str(src),
        ],
        check=True,
        env=_env(),
        capture_output=True,
        timeout=300,
    )
    code = (
        "import physres.runner as r, physres.scenarios as s; "
        "print(r.shipped_dir()); print(s.__file__); print(' '.join(r.list_scenarios()))"
    )
    done = subprocess.run(
        [str(python), "-c", code],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=tmp_path,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    shipped, package, names = done.stdout.strip().splitlines()
    assert Path(shipped) == src / "scenarios" and Path(package) == src / "scenarios/__init__.py"
    assert set(names.split()) == SHIPPED

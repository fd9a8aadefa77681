"""A full disk: `physres generate`, `physres run` and physres.data.generate fail with one line
naming the file (exit 2), leave nothing behind and keep the interpreter alive. HDF5 used to
crash (exit 139) on ENOSPC; now it never writes to the disk itself."""

import collections
import errno
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import physres
from physres import _io, runner
from physres.cli import main

Usage = collections.namedtuple("Usage", "total used free")
REPO = Path(__file__).resolve().parent.parent


def _one_line(err: str, *words) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for word in words:
        assert word in lines[0], (word, lines[0])


@pytest.fixture
def nearly_full(monkeypatch):
    """A file system that reports 100 kB free wherever physres asks."""
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(1 << 30, 1 << 29, 100_000))


def test_generate_checks_free_space_before_writing(tmp_path, nearly_full, capsys):
    out = tmp_path / "l.h5"
    assert (
        main(
            [
                "generate",
                "lorenz63",
                "--out",
                str(out),
                "--n-traj",
                "8",
                "--t-end",
                "5",
                "--no-progress",
            ]
        )
        == 2
    )
    _one_line(capsys.readouterr().err, "not enough free space", str(out))
    assert list(tmp_path.iterdir()) == []


def test_python_write_error_is_a_clean_oserror(tmp_path, monkeypatch):
    """ENOSPC raised by the write itself (the free-space figure was wrong): an OSError that
    names the destination, no temporary file, the old file untouched."""
    dest = tmp_path / "m.pt"
    dest.write_bytes(b"old")
    real_open = open

    class Full:
        def __init__(self, fh):
            self.fh = fh

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.fh, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

    def full_open(file, mode="r", *args, **kwargs):
        fh = real_open(file, mode, *args, **kwargs)
        return Full(fh) if "w" in mode else fh

    monkeypatch.setattr(_io, "open", full_open, raising=False)  # the writes of physres._io
    model = physres.models.get("resnet", state_shape=(2,), width=4, dt=0.1)
    with pytest.raises(OSError, match=r"cannot write '.*m\.pt': No space left on device") as exc:
        physres.save(model, dest)
    assert exc.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"] and dest.read_bytes() == b"old"


@pytest.fixture
def tiny_fs(tmp_path):
    """A real 2 MB tmpfs (needs root and mount); skipped where it cannot be mounted."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("a 2 MB tmpfs needs root and mount")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def _run_code(code, **kw):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", **kw}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_generate_on_a_full_tmpfs_exits_2_not_139(tiny_fs):
    out = tiny_fs / "l.h5"
    done = _run_code(f"""
        import sys
        from physres.cli import main
        sys.exit(main(["generate", "schrodinger_1d", "--out", {str(out)!r}, "--n-traj", "16",
                       "--no-progress"]))""")  # about 6 MB
    assert done.returncode == 2, done.stderr
    _one_line(done.stderr, str(out))
    assert os.listdir(tiny_fs) == []


def test_write_past_a_wrong_free_space_figure_fails_cleanly(tiny_fs):
    """The free-space check is told the disk is empty; the real write then hits ENOSPC: from
    Python the OSError is caught and the interpreter carries on (it used to crash)."""
    out = tiny_fs / "l.h5"
    done = _run_code(f"""
        import collections, shutil
        import physres
        shutil.disk_usage = lambda p: collections.namedtuple("U", "total used free")(
            1 << 40, 0, 1 << 40)
        try:
            physres.data.generate("schrodinger_1d", {str(out)!r}, n_traj=16, progress=False)
        except OSError as exc:
            print("caught", exc.errno, exc)
        import gc, h5py, numpy
        gc.collect()
        with h5py.File("after.h5", "w", driver="core", backing_store=False) as f:
            f["x"] = numpy.arange(10)
        print("alive")""")
    assert done.returncode == 0, done.stderr
    assert "caught 28" in done.stdout and str(out) in done.stdout and "alive" in done.stdout
    assert os.listdir(tiny_fs) == []


TOY = '''
"""Writes a data file and a report under out."""
from dataclasses import dataclass

SUMMARY = "toy: data + report"


@dataclass(frozen=True)
class Config:
    n_traj: int = 16


QUICK = FULL = Config()


def run(cfg, ctx):
    import physres
    physres.data.generate("schrodinger_1d", ctx.path("data.h5"), n_traj=cfg.n_traj,
                          progress=False)
    return {"summary": [{"a": 1}]}, "# Toy\\n"
'''


def test_run_on_a_full_tmpfs_exits_2(tiny_fs, tmp_path):
    d = tmp_path / "toys"
    d.mkdir()
    (d / "toy_disk.py").write_text(TOY)
    done = _run_code(
        f"""
        import sys
        from physres.cli import main
        sys.exit(main(["run", "toy_disk", "--out", {str(tiny_fs / "run")!r}, "--no-progress"]))""",
        **{runner.ENV_VAR: str(d)},
    )
    assert done.returncode == 2, done.stderr
    _one_line(done.stderr, "data.h5")
    assert os.listdir(tiny_fs / "run") == []


def test_free_space_margin_is_applied(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "disk_usage", lambda p: Usage(10, 0, _io.MARGIN_BYTES + 99))
    with pytest.raises(OSError, match="not enough free space"):
        _io.check_free_space(tmp_path / "x", 100)
    _io.check_free_space(tmp_path / "x", 99)

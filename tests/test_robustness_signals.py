"""`physres generate --workers 2` stopped by SIGTERM or SIGKILL leaves no worker and no
temporary file; a second run to the same path is refused while the first holds its lock."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from physres import _io
from physres.cli import main

REPO = Path(__file__).resolve().parent.parent
LONG = ["lorenz63", "--n-traj", "400", "--t-end", "50", "--workers", "2", "--no-progress"]

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc for children")


def _start(out: Path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    code = "import sys; from physres.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.Popen(
        [sys.executable, "-c", code, "generate", *LONG, "--out", str(out)],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )


def _stop(proc) -> None:
    proc.kill()
    proc.wait()
    proc.stderr.close()


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def _running_with_workers(proc, out: Path) -> list[int]:
    _wait(lambda: _io.lock_path(out).exists() or proc.poll() is not None, 120, "no lock")
    assert proc.poll() is None, proc.stderr.read()
    _wait(lambda: len(_children(proc.pid)) >= 2 or proc.poll() is not None, 120, "no workers")
    workers = _children(proc.pid)
    assert len(workers) >= 2
    return workers


def test_sigterm_stops_workers_and_removes_temporary_files(tmp_path):
    out = tmp_path / "l.h5"
    proc = _start(out)
    try:
        workers = _running_with_workers(proc, out)
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    finally:
        _stop(proc)
    _wait(lambda: not any(map(_alive, workers)), 10, "a worker outlived the SIGTERM")
    assert sorted(os.listdir(tmp_path)) == []  # no file, no temporary file, no lock


def test_sigkill_workers_die_with_the_parent_and_leftovers_are_cleaned(tmp_path):
    out = tmp_path / "l.h5"
    proc = _start(out)
    try:
        workers = _running_with_workers(proc, out)
    finally:
        _stop(proc)
    _wait(lambda: not any(map(_alive, workers)), 10, "a worker outlived its killed parent")
    assert not out.exists()
    # a killed process cannot clean up: the next write to the same path removes its leftovers
    dead = proc.pid
    stale = tmp_path / f".l.h5.{dead}.abcd1234.tmp"
    stale.write_bytes(b"partial")
    mine = tmp_path / f".l.h5.{os.getpid()}.abcd1234.tmp"  # a live process's: kept
    mine.write_bytes(b"in progress")
    assert (
        main(
            [
                "generate",
                "harmonic_oscillator",
                "--out",
                str(out),
                "--n-traj",
                "2",
                "--t-end",
                "1",
                "--no-progress",
            ]
        )
        == 0
    )
    assert not stale.exists() and mine.exists() and out.exists()


def test_second_run_to_the_same_path_is_refused(tmp_path, capsys):
    out = tmp_path / "l.h5"
    proc = _start(out)
    try:
        _wait(lambda: _io.lock_path(out).exists() or proc.poll() is not None, 120, "no lock")
        assert proc.poll() is None
        assert (
            main(
                [
                    "generate",
                    "harmonic_oscillator",
                    "--out",
                    str(out),
                    "--n-traj",
                    "2",
                    "--t-end",
                    "1",
                    "--no-progress",
                ]
            )
            == 2
        )
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
        assert str(_io.lock_path(out)) in err and f"pid {proc.pid}" in err
        assert not out.exists()
    finally:
        _stop(proc)

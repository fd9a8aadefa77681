"""HDF5 trajectory files: generate → open → WindowDataset, schema checks, atomic writes."""

import os
import shutil
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import physres
from physres import FormatError
from physres.data import WindowDataset, split_indices
from physres.data.schema import REQUIRED_ATTRS
from physres.reference import solve
from physres.steppers import DenseOperator
from physres.systems import System


class Rotor(System):
    """Complex states ``ψ' = -iωψ`` (exact ``ψ0 e^{-iωt}``)."""

    dtype = torch.complex128
    state_shape = (2,)
    t_end, dt_save = 1.0, 0.1
    grid = torch.tensor([-0.5, 0.5])  # two "sites", stored under /grid/x

    def __init__(self, omega=1.3):
        self.omega = omega
        super().__init__(omega=omega)

    def rhs(self, t, x):
        return -1j * self.omega * x

    def linear_operator(self, t):
        return DenseOperator(-1j * self.omega * torch.eye(2, dtype=torch.complex128))

    def sample_initial(self, n, seed=0):
        return torch.randn(
            n, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.complex128
        )

    def invariants(self, x):
        return {"norm": (x.abs() ** 2).sum(1)}


@pytest.fixture(scope="module")
def ho_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "ho.h5"
    system = physres.systems.get("harmonic_oscillator", omega=1.5)
    physres.data.generate(system, path, n_traj=10, t_end=3.0, dt_save=0.1, seed=3, progress=False)
    return path


def test_round_trip_schema_and_values(ho_file):
    system = physres.systems.get("harmonic_oscillator", omega=1.5)
    with physres.data.open(ho_file) as f:
        assert set(REQUIRED_ATTRS) <= set(f.attrs)
        assert f.attrs["format"] == "physres-trajectories" and f.attrs["format_version"] == 1
        assert f.attrs["reference_method"] == "DOP853" and f.attrs["seed"] == 3
        assert f.attrs["rtol"] == system.reference_rtol and f.attrs["atol"] == 1e-12
        assert f.attrs["physres_version"] == physres.__version__
        assert f.system_name == "harmonic_oscillator" and f.system_params == {"omega": 1.5}
        assert f.make_system().omega == 1.5
        assert len(f) == 10 and f.state_shape == (2,) and f.dtype == torch.float64
        np.testing.assert_allclose(f.t, 0.1 * np.arange(31), rtol=0, atol=1e-15)
        assert f.dt_save == 0.1
        assert isinstance(f.states, h5py.Dataset)  # lazy
        assert f.states.chunks == (1, 31, 2) and f.states.compression == "gzip"
        states = f.states[()]
        x0 = system.sample_initial(10, seed=3)
        assert states.tobytes() == solve(system, x0, f.t).tobytes()
        np.testing.assert_allclose(states, system.solution(x0, f.t).numpy(), atol=1e-9)
        energy = system.invariants(torch.from_numpy(states.reshape(-1, 2)))["energy"]
        np.testing.assert_allclose(f.invariants["energy"][()], energy.reshape(10, 31).numpy())
        assert f.stats["nfev"].shape == (10,) and (f.stats["nfev"] > 0).all()
        assert (f.stats["wall_s"] > 0).all()
        assert f.grid == {}
        f.verify()


def test_complex_states_and_expm(tmp_path):
    path = physres.data.generate(
        Rotor(), tmp_path / "rotor.h5", n_traj=3, method="expm", progress=False
    )
    with physres.data.open(path) as f:
        assert f.dtype == torch.complex128 and f.states.dtype == np.complex128
        np.testing.assert_array_equal(f.grid["x"], [-0.5, 0.5])
        x0 = Rotor().sample_initial(3).numpy()
        exact = x0[:, None] * np.exp(-1.3j * f.t)[None, :, None]
        np.testing.assert_allclose(f.states[()], exact, atol=1e-13)
        norm0 = (np.abs(x0) ** 2).sum(1)
        np.testing.assert_allclose(
            f.invariants["norm"][()], np.repeat(norm0[:, None], 11, 1), rtol=1e-12
        )
    ds = WindowDataset(path, input_len=1, target_len=1, split="all")
    assert ds[0][0].dtype == torch.complex128
    assert ds.normalization["std"].dtype == torch.float64
    assert torch.equal(ds.normalization["mean"], torch.zeros(2, dtype=torch.float64))


def test_parallel_generation_identical_bytes(tmp_path):
    system = physres.systems.get("lorenz63")
    options = dict(n_traj=6, t_end=1.0, dt_save=0.02, seed=11, progress=False)
    serial = physres.data.generate(system, tmp_path / "serial.h5", **options)
    parallel = physres.data.generate(system, tmp_path / "parallel.h5", workers=2, **options)
    with physres.data.open(serial) as a, physres.data.open(parallel) as b:
        assert a.states[()].tobytes() == b.states[()].tobytes()
        for name in a.invariants:
            assert a.invariants[name][()].tobytes() == b.invariants[name][()].tobytes()


def test_windows_match_stored_frames(ho_file):
    ds = WindowDataset(ho_file, input_len=2, target_len=3, stride=4, frame_step=2, split="val")
    assert ds.dt == pytest.approx(0.2)
    span = (2 + 3 - 1) * 2 + 1
    assert ds.windows_per_trajectory == (31 - span) // 4 + 1
    assert len(ds) == len(ds.trajectory_indices) * ds.windows_per_trajectory
    with physres.data.open(ho_file) as f:
        states = torch.from_numpy(f.states[()])
    for k in range(len(ds)):
        traj = ds.trajectory_indices[k // ds.windows_per_trajectory]
        start = 4 * (k % ds.windows_per_trajectory)
        frames = states[traj, start : start + span : 2]
        x, y = ds[k]
        assert x.shape == (2, 2) and y.shape == (3, 2)
        assert torch.equal(x, frames[:2]) and torch.equal(y, frames[2:])
    with pytest.raises(IndexError, match="out of range"):
        ds[len(ds)]


def test_cache_stays_within_budget(ho_file):
    one_trajectory = 31 * 2 * 8
    ds = WindowDataset(ho_file, input_len=1, target_len=2, cache_bytes=3 * one_trajectory)
    full = WindowDataset(ho_file, input_len=1, target_len=2)
    for k in torch.randperm(len(ds)).tolist():
        assert torch.equal(torch.cat(ds[k]), torch.cat(full[k]))
        assert ds._cached_bytes <= 3 * one_trajectory and len(ds._cache) <= 3
    x, _ = ds[0]
    x.mul_(0.0)  # items are copies: editing one leaves the cache intact
    assert torch.equal(ds[0][0], full[0][0])


def test_block_sampler_covers_every_window_once_per_epoch(ho_file):
    ds = WindowDataset(ho_file, input_len=1, target_len=1, split="all")
    sampler = ds.sampler(trajectories_per_block=3, seed=1)
    first, second = list(sampler), list(sampler)
    assert sorted(first) == list(range(len(ds))) == sorted(second)
    assert first != second  # reshuffled each epoch
    w = ds.windows_per_trajectory
    blocks = [{i // w for i in first[lo : lo + 3 * w]} for lo in range(0, len(first), 3 * w)]
    assert all(len(b) <= 3 for b in blocks)  # each stretch of 3 trajectories' windows
    assert set().union(*blocks) == set(range(10))


def test_dataloader_workers_stream_the_same_windows(ho_file):
    ds = WindowDataset(ho_file, input_len=1, target_len=2)
    direct = torch.stack([torch.cat(ds[k]) for k in range(len(ds))])
    loader = DataLoader(ds, batch_size=16, num_workers=2, shuffle=False)
    streamed = torch.cat([torch.cat([x, y], dim=1) for x, y in loader])
    assert torch.equal(streamed, direct)


def test_splits_disjoint_deterministic_and_complete(ho_file):
    parts = {
        s: WindowDataset(ho_file, split=s, seed=5).trajectory_indices
        for s in ("train", "val", "test")
    }
    union = np.concatenate(list(parts.values()))
    assert sorted(union.tolist()) == list(range(10))  # every trajectory exactly once
    assert [len(p) for p in parts.values()] == [8, 1, 1]
    again = WindowDataset(ho_file, split="train", seed=5).trajectory_indices
    assert np.array_equal(again, parts["train"])
    assert not np.array_equal(WindowDataset(ho_file, seed=6).trajectory_indices, parts["train"])
    custom = split_indices(20, (0.5, 0.25, 0.25), seed=0)
    assert [len(v) for v in custom.values()] == [10, 5, 5]
    for n, sizes in ((1, [1, 0, 0]), (2, [1, 1, 0]), (3, [1, 1, 1]), (4, [2, 1, 1])):
        assert [len(v) for v in split_indices(n).values()] == sizes, n
    with pytest.raises(ValueError, match="leave no training trajectory"):
        split_indices(1, (0.1, 0.9, 0.0))


def test_normalization_from_training_split_only(ho_file):
    with physres.data.open(ho_file) as f:
        states = f.states[()]
        stored = f._file["normalization/seed0_0.8_0.1_0.1"]
        assert stored["mean"].shape == (2,)
    for seed in (0, 9):  # seed 0: stored by generate; seed 9: computed on the fly
        ds = WindowDataset(ho_file, split="test", seed=seed)
        train = split_indices(10, seed=seed)["train"]
        x = states[train].reshape(-1, 2)
        torch.testing.assert_close(ds.normalization["mean"], torch.from_numpy(x.mean(0)))
        torch.testing.assert_close(ds.normalization["std"], torch.from_numpy(x.std(0)))
        everything = states.reshape(-1, 2)
        assert not np.allclose(
            ds.normalization["mean"].numpy(), everything.mean(0), rtol=1e-6, atol=0
        )


def test_truncated_and_corrupted_files_refused(ho_file, tmp_path):
    size = os.path.getsize(ho_file)
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(ho_file.read_bytes()[: size // 2])
    with pytest.raises(FormatError, match=r"truncated\.h5: not a readable HDF5 file"):
        physres.data.open(truncated)

    header = tmp_path / "header.h5"
    data = bytearray(ho_file.read_bytes())
    data[:8] = b"garbage!"
    header.write_bytes(bytes(data))
    with pytest.raises(FormatError, match=r"header\.h5: not a readable HDF5 file"):
        physres.data.open(header)

    chunk = tmp_path / "chunk.h5"
    shutil.copy(ho_file, chunk)
    with h5py.File(chunk, "r") as f:
        info = f["states"].id.get_chunk_info(4)  # trajectory 4's chunk
    with open(chunk, "r+b") as fh:
        fh.seek(info.byte_offset + info.size // 2)
        fh.write(b"\xff\x00\xff\x00")
    with physres.data.open(chunk) as f:  # the metadata is intact ...
        with pytest.raises(FormatError, match=r"chunk\.h5: trajectory 4 is corrupt"):
            f.verify()  # ... the checksum catches the data

    not_ours = tmp_path / "other.h5"
    with h5py.File(not_ours, "w") as f:
        f.create_dataset("x", data=np.zeros(3))
    with pytest.raises(FormatError, match=r"other\.h5: not a physres trajectory file"):
        physres.data.open(not_ours)

    future = tmp_path / "future.h5"
    shutil.copy(ho_file, future)
    with h5py.File(future, "r+") as f:
        f.attrs["format_version"] = 2
    with pytest.raises(FormatError, match=r"future\.h5: unsupported format_version 2"):
        physres.data.open(future)

    bad_shape = tmp_path / "shape.h5"
    shutil.copy(ho_file, bad_shape)
    with h5py.File(bad_shape, "r+") as f:
        del f["t"]
        f["t"] = np.arange(5.0)
    with pytest.raises(FormatError, match=r"shape\.h5: /states must have shape"):
        physres.data.open(bad_shape)

    with pytest.raises(FileNotFoundError, match="missing.h5"):
        physres.data.open(tmp_path / "missing.h5")


def test_failed_generation_leaves_nothing(tmp_path, monkeypatch):
    system = physres.systems.get("harmonic_oscillator")
    dest = tmp_path / "out.h5"
    dest.write_bytes(b"previous content")
    calls = []
    real = physres.reference._solve_one

    def flaky(index, *args):
        calls.append(index)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(index, *args)

    monkeypatch.setattr(physres.reference, "_solve_one", flaky)
    with pytest.raises(KeyboardInterrupt):
        physres.data.generate(system, dest, n_traj=5, progress=False)
    assert sorted(os.listdir(tmp_path)) == ["out.h5"]  # no temporary file left behind
    assert dest.read_bytes() == b"previous content"  # the old file is untouched


def test_killed_generation_leaves_no_file(tmp_path):
    dest = tmp_path / "killed.h5"
    code = (
        f"import physres; physres.data.generate('lorenz63', {str(dest)!r}, n_traj=400, "
        "t_end=50.0, progress=False)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        _wait_for(tmp_path / ".killed.h5.lock", proc)  # the run holds its lock: it is writing
        time.sleep(0.5)  # well into the run
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not dest.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def _wait_for(path, proc, timeout=120.0):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, "generation ended before it could be killed"
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.05)


def test_generate_bad_input(tmp_path):
    ho = physres.systems.get("harmonic_oscillator")
    with pytest.raises(ValueError, match="`n_traj`"):
        physres.data.generate(ho, tmp_path / "a.h5", n_traj=0, progress=False)
    with pytest.raises(ValueError, match="`dt_save`"):
        physres.data.generate(ho, tmp_path / "a.h5", t_end=1.0, dt_save=2.0, progress=False)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        physres.data.generate(ho, tmp_path / "nowhere" / "a.h5", progress=False)
    with pytest.raises(ValueError, match="`compression`"):
        physres.data.generate(ho, tmp_path / "a.h5", n_traj=1, compression="zstd", progress=False)
    with pytest.raises(ValueError, match="unknown system 'nope'"):
        physres.data.generate("nope", tmp_path / "a.h5", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_window_dataset_bad_input(ho_file):
    with pytest.raises(ValueError, match="`split`"):
        WindowDataset(ho_file, split="training")
    with pytest.raises(ValueError, match="`fractions`"):
        WindowDataset(ho_file, fractions=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="spans 61 frames, more than the 31"):
        WindowDataset(ho_file, input_len=30, target_len=1, frame_step=2)
    with pytest.raises(ValueError, match="`input_len`"):
        WindowDataset(ho_file, input_len=0)

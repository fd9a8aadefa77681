"""Data generation and streaming, side by side.

1. ``physres.data.generate`` with 2 worker processes vs 1 on a CPU-bound system (lorenz63).
2. ``WindowDataset`` through a ``DataLoader`` vs the same windows from an in-memory array
   (fully random shuffle and the cache-friendly ``BlockSampler``; 0 and 2 loader workers).
3. Peak resident memory while streaming a file several times larger than the chunk-cache
   budget (measured in a fresh process).

    python benchmarks/data.py [--quick] [--out benchmarks/data.json]

Prints ratios and writes JSON. No timing here is asserted anywhere.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

import physres
from physres.data.schema import FORMAT, FORMAT_VERSION
from physres.data.writer import atomic_h5, create_states


def bench_generation(tmp: Path, n_traj: int) -> dict:
    system = physres.systems.get("lorenz63")
    times, files = {}, {}
    for workers in (1, 2):
        files[workers] = tmp / f"gen_{workers}.h5"
        start = time.perf_counter()
        physres.data.generate(
            system, files[workers], n_traj=n_traj, workers=workers, progress=False
        )
        times[workers] = time.perf_counter() - start
    with physres.data.open(files[1]) as a, physres.data.open(files[2]) as b:
        identical = a.states[()].tobytes() == b.states[()].tobytes()
    return {
        "system": "lorenz63",
        "n_traj": n_traj,
        "t_end": system.t_end,
        "serial_s": times[1],
        "workers2_s": times[2],
        "speedup": times[1] / times[2],
        "identical_bytes": identical,
    }


def synthetic_file(path: Path, n_traj: int, n_t: int, dim: int, compression: str) -> int:
    """A schema-v1 file of smooth random walks (compresses like real trajectories)."""
    rng = np.random.default_rng(0)
    with atomic_h5(path) as f:
        f.attrs.update(
            {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "system": "lorenz63",
                "system_params": "{}",
                "reference_method": "synthetic",
                "rtol": 0.0,
                "atol": 0.0,
                "seed": 0,
                "physres_version": physres.__version__,
                "created": "benchmark",
                "dt_save": 0.01,
            }
        )
        f["t"] = 0.01 * np.arange(n_t)
        states = create_states(f, n_traj, n_t, (dim,), np.float64, compression)
        for lo in range(0, n_traj, 256):
            hi = min(n_traj, lo + 256)
            states[lo:hi] = np.cumsum(rng.normal(0, 0.05, (hi - lo, n_t, dim)), axis=1)
    return n_traj * n_t * dim * 8


class InMemoryWindows(Dataset):
    """The same windows as a WindowDataset, sliced from a numpy array in RAM."""

    def __init__(self, ds: physres.data.WindowDataset):
        with physres.data.open(ds.path) as f:
            self.states = f.states[np.sort(ds.trajectory_indices)]
        self.ds = ds

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, index):
        k, j = divmod(index, self.ds.windows_per_trajectory)
        start = j * self.ds.stride
        frames = torch.from_numpy(self.states[k, start : start + self.ds.span : self.ds.frame_step])
        return frames[: self.ds.input_len], frames[self.ds.input_len :]


def throughput(dataset, n_batches: int, batch_size: int, workers: int, sampler=None) -> float:
    """Windows per second over ``n_batches`` batches (after one warm-up batch)."""
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        num_workers=workers,
        persistent_workers=False,
        generator=torch.Generator().manual_seed(0),
    )
    it = iter(loader)
    next(it)
    start, seen = time.perf_counter(), 0
    for _ in range(n_batches):
        try:
            x, _ = next(it)
        except StopIteration:
            break
        seen += x.shape[0]
    return seen / (time.perf_counter() - start)


def bench_streaming(path: Path, n_batches: int, cache_bytes: int) -> dict:
    ds = physres.data.WindowDataset(path, input_len=1, target_len=4, cache_bytes=cache_bytes)
    memory = InMemoryWindows(ds)
    rows = {}
    for workers in (0, 2):
        rows[f"in_memory_w{workers}"] = throughput(memory, n_batches, 256, workers)
        rows[f"stream_random_w{workers}"] = throughput(ds, n_batches // 5, 256, workers)
        rows[f"stream_block_w{workers}"] = throughput(
            ds, n_batches, 256, workers, sampler=ds.sampler()
        )
    for workers in (0, 2):
        base = rows[f"in_memory_w{workers}"]
        for kind in ("random", "block"):
            rows[f"ratio_{kind}_w{workers}"] = rows[f"stream_{kind}_w{workers}"] / base
    return rows


def _rss_mib() -> float:
    """Current resident memory of this process (Linux /proc)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _iterate(path: str, cache_bytes: int, sampler: str) -> None:
    """Child process: stream windows through a DataLoader (main process) and print the growth
    of resident memory over its level before the first batch. Block sampling runs a whole
    epoch (stride 8); random sampling stops after 100 batches (25,600 random windows)."""
    ds = physres.data.WindowDataset(
        path, input_len=1, target_len=4, stride=8, cache_bytes=cache_bytes
    )
    loader = DataLoader(
        ds,
        batch_size=256,
        sampler=ds.sampler() if sampler == "block" else None,
        shuffle=sampler == "random",
    )
    before = peak = _rss_mib()
    n = 0
    for k, (x, _) in enumerate(loader):
        n += x.shape[0]
        if k % 10 == 0:
            peak = max(peak, _rss_mib())
        if sampler == "random" and k == 100:
            break
    peak = max(peak, _rss_mib())
    print(
        json.dumps(
            {
                "windows": n,
                "rss_before_mib": before,
                "peak_rss_mib": peak,
                "growth_mib": peak - before,
            }
        )
    )


def bench_memory(path: Path, cache_bytes: int, file_bytes: int) -> dict:
    out = {
        "file_mib": file_bytes / 2**20,
        "on_disk_mib": os.path.getsize(path) / 2**20,
        "cache_mib": cache_bytes / 2**20,
    }
    for sampler in ("block", "random"):
        res = subprocess.run(
            [sys.executable, __file__, "--_iterate", str(path), str(cache_bytes), sampler],
            capture_output=True,
            text=True,
            check=True,
        )
        out[sampler] = json.loads(res.stdout.strip().splitlines()[-1])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (about a minute)")
    parser.add_argument("--out", default=str(Path(__file__).with_suffix(".json")))
    parser.add_argument("--compression", default="gzip", choices=("gzip", "lzf"))
    parser.add_argument("--_iterate", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._iterate:
        path, cache, sampler = args._iterate
        return _iterate(path, int(cache), sampler)

    sys.stdout.reconfigure(line_buffering=True)
    torch.set_num_threads(1)
    n_gen, n_stream, n_batches = (8, 1000, 100) if args.quick else (24, 4000, 300)
    cache = 8 << 20
    result = {
        "machine": f"{os.cpu_count()} CPUs (shared)",
        "quick": args.quick,
        "load_average_start": os.getloadavg()[0],
    }
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        result["generation"] = gen = bench_generation(tmp, n_gen)
        print(
            f"generate lorenz63 x{n_gen}: 1 worker {gen['serial_s']:.2f} s, 2 workers "
            f"{gen['workers2_s']:.2f} s -> {gen['speedup']:.2f}x "
            f"(identical bytes: {gen['identical_bytes']})"
        )
        path = tmp / "stream.h5"
        file_bytes = synthetic_file(path, n_stream, 2001, 3, args.compression)
        result["streaming"] = rows = bench_streaming(path, n_batches, cache)
        print(f"windows/s (batch 256, input 1 + target 4 frames, {args.compression}):")
        for workers in (0, 2):
            print(
                f"  loader workers={workers}: in-memory {rows[f'in_memory_w{workers}']:9.0f}"
                f" | stream random {rows[f'stream_random_w{workers}']:9.0f} "
                f"({rows[f'ratio_random_w{workers}']:.2f}x)"
                f" | stream block {rows[f'stream_block_w{workers}']:9.0f} "
                f"({rows[f'ratio_block_w{workers}']:.2f}x)"
            )
        result["memory"] = mem = bench_memory(path, cache, file_bytes)
        print(
            f"memory: file {mem['file_mib']:.0f} MiB of states ({mem['on_disk_mib']:.0f} MiB "
            f"on disk), cache budget {mem['cache_mib']:.0f} MiB"
        )
        for key in ("block", "random"):
            m = mem[key]
            print(
                f"  {key}: {m['windows']} windows, resident memory +{m['growth_mib']:.1f} MiB "
                f"while streaming (peak {m['peak_rss_mib']:.0f} MiB incl. torch)"
            )
    result["load_average_end"] = os.getloadavg()[0]
    print(
        f"load average (1 min) {result['load_average_start']:.1f} at start, "
        f"{result['load_average_end']:.1f} at end, on {os.cpu_count()} CPUs"
    )
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

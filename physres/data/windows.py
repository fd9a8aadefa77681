"""A torch ``Dataset`` of (input window, target window) pairs streamed from an HDF5 file.

Splits are by trajectory (no window of a test trajectory is ever seen in training): a
permutation of the trajectory indices from ``numpy.random.default_rng(seed)`` is cut into
train / val / test by ``fractions``. Normalisation statistics come from the training
trajectories only. :func:`physres.data.generate` stores them for the default split
(``fractions=(0.8, 0.1, 0.1), seed=0``) under ``/normalization/seed0_0.8_0.1_0.1``; any other
split computes them on the fly in one streaming pass (the file stays read-only).

Each process (each ``DataLoader`` worker) opens its own ``h5py`` handle on first use and keeps
decompressed chunks in an LRU cache of ``cache_bytes``; memory stays bounded by that cache
whatever the file size.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from .. import _checks
from .schema import split_key

SPLITS = ("train", "val", "test", "all")
DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)


def split_indices(n_traj: int, fractions=DEFAULT_FRACTIONS, seed: int = 0) -> dict:
    """Disjoint sorted trajectory indices ``{"train", "val", "test"}`` covering ``range(n_traj)``.

    Val and test get ``round(fraction * n_traj)`` trajectories, at least one when their
    fraction is positive and at least one trajectory is left for training; train gets the rest.
    """
    fractions = _check_fractions(fractions)
    perm = np.random.default_rng(seed).permutation(n_traj)
    counts = [round(f * n_traj) for f in fractions[1:]]
    for k in (0, 1):
        if fractions[k + 1] > 0 and counts[k] == 0 and n_traj - sum(counts) > 1:
            counts[k] = 1
    n_val, n_test = counts
    n_train = n_traj - n_val - n_test
    if n_train < 1:
        raise ValueError(f"`fractions` {fractions} leave no training trajectory out of {n_traj}")
    cuts = {
        "train": perm[:n_train],
        "val": perm[n_train : n_train + n_val],
        "test": perm[n_train + n_val :],
    }
    return {k: np.sort(v) for k, v in cuts.items()}


def moments(states: h5py.Dataset, indices) -> tuple[np.ndarray, np.ndarray]:
    """Per-component mean and std (shape ``state_shape``, real) over the trajectories ``indices``
    and all their times, one trajectory in memory at a time (Chan et al. 1979 pairwise update).

    Complex states get mean 0 and the RMS modulus as std (a phase-preserving scale).
    Components with zero spread get std 1.
    """
    shape = states.shape[2:]
    count, mean, m2 = 0, np.zeros(shape), np.zeros(shape)
    is_complex = np.iscomplexobj(np.empty(0, states.dtype))
    for i in indices:
        x = states[int(i)]  # (n_t, *state_shape)
        if is_complex:
            x_mean, x_m2 = np.zeros(shape), (np.abs(x) ** 2).sum(0)
        else:
            x_mean = x.mean(0)
            x_m2 = ((x - x_mean) ** 2).sum(0)
        n = x.shape[0]
        delta = x_mean - mean
        total = count + n
        mean = mean + delta * n / total
        m2 = m2 + x_m2 + delta**2 * count * n / total
        count = total
    std = np.sqrt(m2 / max(count, 1))
    return mean, np.where(std > 0, std, 1.0)


class WindowDataset(Dataset):
    """Windows of consecutive saved frames from one split of a trajectory file.

    Item ``k`` is ``(inputs, targets)``: tensors of shapes ``(input_len, *state_shape)`` and
    ``(target_len, *state_shape)`` in the file's dtype; consecutive frames are ``frame_step``
    saved steps apart, so the emulator's step is ``.dt = frame_step * dt_save``. Window starts
    advance by ``stride`` saved steps.

    Parameters
    ----------
    path : str or Path
    input_len, target_len, stride, frame_step : int
    split : "train", "val", "test" or "all"
    fractions : (float, float, float)
        Train / val / test fractions of the trajectories (summing to 1).
    seed : int
        Seed of the trajectory permutation.
    cache_bytes : int
        Cache of decompressed chunks per process (the memory budget of the stream).

    Attributes
    ----------
    trajectory_indices : ndarray, the trajectories of this split (sorted).
    normalization : dict ``mean``, ``std``: float64 tensors of shape ``state_shape``, from the
        training split only.
    """

    def __init__(
        self,
        path,
        input_len: int = 1,
        target_len: int = 1,
        stride: int = 1,
        frame_step: int = 1,
        split: str = "train",
        fractions=DEFAULT_FRACTIONS,
        seed: int = 0,
        cache_bytes: int = 32 << 20,
    ):
        from .reader import open as open_file

        self.input_len = _checks.positive_int("input_len", input_len)
        self.target_len = _checks.positive_int("target_len", target_len, allow_zero=True)
        self.stride = _checks.positive_int("stride", stride)
        self.frame_step = _checks.positive_int("frame_step", frame_step)
        self.cache_bytes = _checks.positive_int("cache_bytes", cache_bytes)
        if split not in SPLITS:
            raise ValueError(f"`split` must be one of {', '.join(SPLITS)}, got {split!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise TypeError(f"`seed` must be an int, got {type(seed).__name__}")
        self.path, self.split, self.seed = Path(path), split, int(seed)
        self.fractions = _check_fractions(fractions)
        with open_file(self.path) as f:  # validates the file
            self.system_name = f.system_name
            self.state_shape = f.state_shape
            self.dtype = f.dtype
            self.dt = self.frame_step * f.dt_save
            n_traj, self.n_t = len(f), f.t.shape[0]
            splits = split_indices(n_traj, self.fractions, self.seed)
            self.normalization = self._normalization(f, splits["train"])
        self.trajectory_indices = np.arange(n_traj) if split == "all" else splits[split]
        self.span = (self.input_len + self.target_len - 1) * self.frame_step + 1
        if self.span > self.n_t:
            raise ValueError(
                f"a window of input_len={self.input_len} + target_len={self.target_len} frames "
                f"{self.frame_step} saved steps apart spans {self.span} frames, more than the "
                f"{self.n_t} saved in {self.path}"
            )
        self.windows_per_trajectory = (self.n_t - self.span) // self.stride + 1
        self._handle, self._pid, self._cache = None, None, None

    def _normalization(self, f, train) -> dict[str, torch.Tensor]:
        stored = f._file.get(f"normalization/{split_key(self.fractions, self.seed)}")
        if stored is not None:
            mean, std = stored["mean"][()], stored["std"][()]
        else:
            mean, std = moments(f.states, train)
        return {"mean": torch.from_numpy(mean), "std": torch.from_numpy(std)}

    def __len__(self) -> int:
        return len(self.trajectory_indices) * self.windows_per_trajectory

    def _locate(self, index: int) -> tuple[int, int]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"window index {index} out of range for {len(self)} windows")
        index %= len(self)
        k, j = divmod(index, self.windows_per_trajectory)
        return int(self.trajectory_indices[k]), j * self.stride

    def _split(self, frames: np.ndarray):
        x = torch.from_numpy(np.array(frames, copy=True))  # never a view of the cache
        return x[: self.input_len], x[self.input_len :]

    def __getitem__(self, index):
        traj, start = self._locate(index)
        return self._split(self._frames(traj, start))

    def _frames(self, traj: int, start: int) -> np.ndarray:
        """The window's frames ``(n_frames, *state_shape)`` from cached chunk-sized blocks."""
        length = self._block_length()
        first, last = start // length, (start + self.span - 1) // length
        blocks = [self._block(traj, b) for b in range(first, last + 1)]
        frames = blocks[0] if len(blocks) == 1 else np.concatenate(blocks)
        lo = start - first * length
        return frames[lo : lo + self.span : self.frame_step]

    def _block(self, traj: int, b: int) -> np.ndarray:
        """Frames of one HDF5 chunk (decompressed once, kept in an LRU of ``cache_bytes``)."""
        cache = self._open()
        key = (traj, b)
        block = cache.get(key)
        if block is not None:
            cache.move_to_end(key)
            return block
        length = self._block_length()
        block = self._handle["states"][traj, b * length : (b + 1) * length]
        cache[key] = block
        self._cached_bytes += block.nbytes
        while self._cached_bytes > self.cache_bytes and len(cache) > 1:
            self._cached_bytes -= cache.popitem(last=False)[1].nbytes
        return block

    def _block_length(self) -> int:
        self._open()
        return self._chunk_t

    def _open(self) -> OrderedDict:
        """This process's file handle and block cache (opened on first use, again after fork)."""
        if self._handle is None or self._pid != os.getpid():
            # our own LRU holds decompressed blocks; HDF5's chunk cache would only duplicate it
            self._handle = h5py.File(self.path, "r", rdcc_nbytes=0)
            self._pid = os.getpid()
            self._cache, self._cached_bytes = OrderedDict(), 0
            chunks = self._handle["states"].chunks
            self._chunk_t = chunks[1] if chunks else self.n_t
        return self._cache

    def sampler(self, trajectories_per_block: int | None = None, seed: int = 0):
        """A shuffling :class:`BlockSampler` whose blocks fit in half of ``cache_bytes``."""
        if trajectories_per_block is None:
            frame = int(np.prod(self.state_shape)) * (16 if self.dtype.is_complex else 8)
            trajectories_per_block = max(1, self.cache_bytes // (2 * frame * self.n_t))
        return BlockSampler(self, trajectories_per_block, seed)

    def close(self) -> None:
        if self._handle is not None and self._pid == os.getpid():
            self._handle.close()
        self._handle, self._cache = None, None

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_handle"], state["_pid"], state["_cache"] = None, None, None
        return state

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown
            pass

    def __repr__(self) -> str:
        return (
            f"WindowDataset({str(self.path)!r}, split={self.split!r}, "
            f"trajectories={len(self.trajectory_indices)}, windows={len(self)}, "
            f"input_len={self.input_len}, target_len={self.target_len}, dt={self.dt:g})"
        )


class BlockSampler(Sampler):
    """Shuffle that keeps reads local: each epoch permutes the trajectories, cuts them into
    blocks of ``trajectories_per_block`` and yields the windows of one block in random order
    before the next block. With the block's trajectories in the dataset's cache, every chunk is
    decompressed once per epoch instead of once per window. Batches mix windows of up to
    ``trajectories_per_block`` trajectories (a fully random shuffle is the default sampler).
    """

    def __init__(self, dataset: WindowDataset, trajectories_per_block: int, seed: int = 0):
        self.dataset = dataset
        self.per_block = _checks.positive_int("trajectories_per_block", trajectories_per_block)
        self.seed, self.epoch = int(seed), 0

    def __len__(self) -> int:
        return len(self.dataset)

    def __iter__(self):
        rng = np.random.default_rng((self.seed, self.epoch))
        self.epoch += 1
        w = self.dataset.windows_per_trajectory
        order = rng.permutation(len(self.dataset.trajectory_indices))
        for lo in range(0, order.size, self.per_block):
            block = order[lo : lo + self.per_block]
            items = (block[:, None] * w + np.arange(w)[None, :]).ravel()
            yield from rng.permutation(items).tolist()


def _check_fractions(fractions) -> tuple[float, float, float]:
    try:
        values = tuple(float(x) for x in fractions)
    except (TypeError, ValueError):
        raise TypeError(
            f"`fractions` must be three numbers (train, val, test), got {fractions!r}"
        ) from None
    if (
        len(values) != 3
        or any(not np.isfinite(x) or x < 0 for x in values)
        or abs(sum(values) - 1.0) > 1e-9
        or values[0] <= 0
    ):
        raise ValueError(
            f"`fractions` must be three non-negative numbers (train > 0) summing "
            f"to 1, got {fractions!r}"
        )
    return values

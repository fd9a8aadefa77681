"""Training data: windows of an HDF5 file, in a deterministic, shardable order.

Two paths give the same batches in the same order: when the training trajectories fit in
memory (by default up to :data:`MEMORY_LIMIT` bytes) they are read once into one contiguous
tensor on the training device and each batch is gathered there by index; otherwise windows
are streamed from the file through :class:`physres.data.WindowDataset` and a ``DataLoader``.
Non-finite states are refused where they enter: the error names the file and the trajectory.
"""

from __future__ import annotations

import math

import numpy as np
import torch

MEMORY_LIMIT = 1 << 30  # bytes of training trajectories held in memory by default


class TrainingData:
    """Training windows and validation trajectories of one HDF5 trajectory file.

    ``train`` is a :class:`physres.data.WindowDataset` of ``(inputs (1, *S), targets (K, *S))``
    with K the longest unroll; ``val_states`` holds up to ``val_trajectories`` validation
    trajectories sampled every ``frame_step`` saved steps, ``(n, n_frames, *S)`` (None when
    the split is empty). ``in_memory``: the path taken (``config.in_memory``, or by size).
    """

    def __init__(self, path, config, device=None):
        from .. import data as _data

        self.path = str(path)
        device = torch.device("cpu") if device is None else torch.device(device)
        split = dict(
            frame_step=config.frame_step, fractions=config.fractions, seed=config.split_seed
        )
        self.train = _data.WindowDataset(
            path, input_len=1, target_len=config.unroll, split="train", **split
        )
        if len(self.train) == 0:
            raise ValueError(
                f"{self.path!r} has no training window of {config.unroll + 1} "
                f"frames {config.frame_step} saved steps apart; lower `unroll` or "
                "`frame_step`, or generate longer trajectories"
            )
        self.dt = float(self.train.dt)
        self.state_shape = tuple(self.train.state_shape)
        self.dtype = self.train.dtype
        self.frame_step, self.unroll = config.frame_step, config.unroll
        self.normalization = self.train.normalization
        train_idx = [int(i) for i in self.train.trajectory_indices]
        itemsize = torch.empty((), dtype=self.dtype).element_size()
        self.nbytes = len(train_idx) * self.train.n_t * math.prod(self.state_shape) * itemsize
        self.in_memory = (
            self.nbytes <= MEMORY_LIMIT if config.in_memory is None else bool(config.in_memory)
        )
        self.states = None
        if self.in_memory:
            with _data.open(path) as f:
                states = np.asarray(f.states[train_idx])  # (n_train, n_t, *S)
            self._check_finite(states, train_idx)
            self.states = torch.from_numpy(np.ascontiguousarray(states)).to(device)
        self.val_states = None
        val = _data.WindowDataset(path, input_len=1, target_len=1, split="val", **split)
        indices = sorted(int(i) for i in val.trajectory_indices)[: config.val_trajectories]
        if indices:
            with _data.open(path) as f:
                states = np.asarray(f.states[indices])  # (n, n_t, *S)
            self._check_finite(states, indices)
            frames = states[:, :: config.frame_step]
            n = frames.shape[1] if config.val_steps is None else config.val_steps + 1
            self.val_states = torch.from_numpy(np.ascontiguousarray(frames[:, :n]))

    def _check_finite(self, states: np.ndarray, indices) -> None:
        bad = ~np.isfinite(states.reshape(states.shape[0], states.shape[1], -1)).all(-1)
        if bad.any():
            k, frame = np.argwhere(bad)[0]
            raise ValueError(
                f"`data_path` {self.path!r}: trajectory {indices[k]} has a "
                f"non-finite state at frame {frame}; regenerate or drop it"
            )

    def batches(
        self, epoch: int, batch_size: int, seed: int, rank: int = 0, world: int = 1
    ) -> list[list[int]]:
        """This rank's batches of window indices for ``epoch``: a permutation seeded by
        ``(seed, epoch)``, cut to a multiple of ``world`` and dealt round-robin, so every rank
        runs the same number of batches."""
        g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        perm = torch.randperm(len(self.train), generator=g).tolist()
        perm = perm[: len(perm) - len(perm) % world][rank::world]
        return [perm[i : i + batch_size] for i in range(0, len(perm), batch_size)]

    def gather(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Windows ``index`` (1-D long tensor) from memory: inputs (B, 1, *S), targets
        (B, K, *S), exactly the items of ``train``."""
        wpt, stride = self.train.windows_per_trajectory, self.train.stride
        index = index.to(self.states.device)
        traj, start = index // wpt, (index % wpt) * stride
        offsets = torch.arange(self.unroll + 1, device=index.device) * self.frame_step
        frames = self.states[traj[:, None], start[:, None] + offsets]  # (B, K + 1, *S)
        return frames[:, :1], frames[:, 1:]

    def loader(self, batches: list[list[int]], num_workers: int = 0):
        """Batches ``(inputs, targets)`` in the given order: gathered in memory, or streamed
        through a DataLoader (its own generator: the global RNG is untouched)."""
        if self.in_memory:
            return _MemoryBatches(self, batches)
        from torch.utils.data import DataLoader

        loader = DataLoader(
            self.train,
            batch_sampler=batches,
            num_workers=num_workers,
            generator=torch.Generator().manual_seed(0),
        )
        return _CheckedBatches(self, loader, batches)

    def pairs(self, chunk: int = 8192, stride: int = 1):
        """Training pairs ``(x_n, x_{n+1})`` one model step apart (every ``stride``-th), in
        chunks, for least squares: (B, *S) each."""
        wpt = self.train.windows_per_trajectory
        n = len(self.train.trajectory_indices)
        if self.in_memory:
            fs = self.frame_step
            x0 = self.states[:, : self.states.shape[1] - fs]
            x1 = self.states[:, fs:]
            flat0 = x0.reshape(-1, *self.state_shape)[::stride]
            flat1 = x1.reshape(-1, *self.state_shape)[::stride]
            for i in range(0, flat0.shape[0], chunk):
                yield flat0[i : i + chunk], flat1[i : i + chunk]
            return
        order = list(range(0, n * wpt, stride))
        for inputs, targets in self.loader(
            [order[i : i + chunk] for i in range(0, len(order), chunk)]
        ):
            yield inputs[:, 0], targets[:, 0]


class _MemoryBatches:
    def __init__(self, data, batches):
        self.data, self.batches = data, batches

    def __iter__(self):
        if not self.batches:
            return
        flat = torch.tensor([i for b in self.batches for i in b], dtype=torch.long)
        flat = flat.to(self.data.states.device)
        sizes = [len(b) for b in self.batches]
        for index in torch.split(flat, sizes):
            yield self.data.gather(index)

    def __len__(self):
        return len(self.batches)


class _CheckedBatches:
    """Streamed batches, refused with the file and trajectory when a state is not finite."""

    def __init__(self, data, loader, batches):
        self.data, self.loader, self.batches = data, loader, batches

    def __iter__(self):
        for b, (inputs, targets) in zip(self.batches, self.loader, strict=True):
            if not (torch.isfinite(inputs).all() and torch.isfinite(targets).all()):
                ok = torch.isfinite(inputs).flatten(1).all(1) & torch.isfinite(targets).flatten(
                    1
                ).all(1)
                k = int((~ok).nonzero()[0])
                traj, start = self.data.train._locate(b[k])
                raise ValueError(
                    f"`data_path` {self.data.path!r}: trajectory {traj} has a "
                    f"non-finite state in frames from {start}; regenerate or "
                    "drop it"
                )
            yield inputs, targets

    def __len__(self):
        return len(self.batches)

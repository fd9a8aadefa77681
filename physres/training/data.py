"""Training data: windows streamed from an HDF5 file, in a deterministic, shardable order."""

from __future__ import annotations

import numpy as np
import torch


class TrainingData:
    """Training windows and validation trajectories of one HDF5 trajectory file.

    ``train`` is a :class:`physres.data.WindowDataset` of ``(inputs (1, *S), targets (K, *S))``
    with K the longest unroll; ``val_states`` holds up to ``val_trajectories`` validation
    trajectories sampled every ``frame_step`` saved steps, ``(n, n_frames, *S)`` (None when
    the split is empty).
    """

    def __init__(self, path, config):
        from .. import data as _data

        split = dict(frame_step=config.frame_step, fractions=config.fractions,
                     seed=config.split_seed)
        self.train = _data.WindowDataset(path, input_len=1, target_len=config.unroll,
                                         split="train", **split)
        if len(self.train) == 0:
            raise ValueError(f"{str(path)!r} has no training window of {config.unroll + 1} "
                             f"frames {config.frame_step} saved steps apart; lower `unroll` or "
                             "`frame_step`, or generate longer trajectories")
        self.dt = float(self.train.dt)
        self.normalization = self.train.normalization
        self.val_states = None
        val = _data.WindowDataset(path, input_len=1, target_len=1, split="val", **split)
        indices = sorted(int(i) for i in val.trajectory_indices)[: config.val_trajectories]
        if indices:
            with _data.open(path) as f:
                states = np.asarray(f.states[indices])  # (n, n_t, *S)
            frames = states[:, :: config.frame_step]
            n = frames.shape[1] if config.val_steps is None else config.val_steps + 1
            self.val_states = torch.from_numpy(np.ascontiguousarray(frames[:, :n]))

    def batches(self, epoch: int, batch_size: int, seed: int, rank: int = 0,
                world: int = 1) -> list[list[int]]:
        """This rank's batches of window indices for ``epoch``: a permutation seeded by
        ``(seed, epoch)``, cut to a multiple of ``world`` and dealt round-robin, so every rank
        runs the same number of batches."""
        g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        perm = torch.randperm(len(self.train), generator=g).tolist()
        perm = perm[: len(perm) - len(perm) % world][rank::world]
        return [perm[i:i + batch_size] for i in range(0, len(perm), batch_size)]

    def loader(self, batches: list[list[int]], num_workers: int = 0):
        """A DataLoader over the given batches (its own generator: the global RNG is untouched)."""
        from torch.utils.data import DataLoader

        return DataLoader(self.train, batch_sampler=batches, num_workers=num_workers,
                          generator=torch.Generator().manual_seed(0))

"""Reference trajectories on disk: HDF5 schema v1, generation, lazy reading, streaming windows.

>>> physres.data.generate("harmonic_oscillator", "ho.h5", n_traj=16)
>>> with physres.data.open("ho.h5") as f:
...     f.states[0, :10]                      # numpy, read lazily
>>> ds = physres.data.WindowDataset("ho.h5", input_len=1, target_len=4, split="train")
"""

from .generate import generate
from .reader import TrajectoryFile, open
from .schema import FORMAT, FORMAT_VERSION, split_key
from .windows import BlockSampler, WindowDataset, moments, split_indices

__all__ = [
    "FORMAT",
    "BlockSampler",
    "FORMAT_VERSION",
    "TrajectoryFile",
    "WindowDataset",
    "generate",
    "moments",
    "open",
    "split_indices",
    "split_key",
]

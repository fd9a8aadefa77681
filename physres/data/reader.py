"""Reading trajectory files lazily: ``physres.data.open(path)`` → :class:`TrajectoryFile`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np
import torch

from ..errors import FormatError
from .schema import _text, validate


class TrajectoryFile:
    """An open, validated schema-v1 file. States and invariants stay on disk until sliced.

    Attributes
    ----------
    t : ndarray, shape (n_t,)
    states : h5py.Dataset, shape (n_traj, n_t, *state_shape); slicing returns numpy
    attrs : dict of the root attributes
    system_name : str; system_params : dict
    invariants : dict name → h5py.Dataset (n_traj, n_t)
    grid : dict axis → ndarray; stats : dict name → ndarray (n_traj,)
    dt_save : float; state_shape : tuple; dtype : torch.dtype
    """

    def __init__(self, path):
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"`path` must be a str or os.PathLike, got {type(path).__name__}")
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"{self.path}: no such file")
        if self.path.is_dir():
            raise IsADirectoryError(f"{self.path}: is a directory, expected an HDF5 file")
        try:
            self._file = h5py.File(self.path, "r")
        except OSError as exc:
            raise FormatError(
                f"{self.path}: not a readable HDF5 file (truncated or corrupt?): {_first_line(exc)}"
            ) from None
        try:
            validate(self._file, self.path)
            self._load()
        except FormatError:
            self._file.close()
            raise
        except (OSError, KeyError, ValueError, TypeError) as exc:
            self._file.close()
            raise FormatError(
                f"{self.path}: unreadable metadata (corrupt file?): {_first_line(exc)}"
            ) from None

    def _load(self) -> None:
        f = self._file
        self.attrs = {k: _attr(v) for k, v in f.attrs.items()}
        self.system_name = self.attrs["system"]
        self.system_params = json.loads(self.attrs["system_params"])
        self.t = f["t"][()]
        self.states = f["states"]
        self.state_shape = tuple(self.states.shape[2:])
        self.dtype = torch.complex128 if self.states.dtype.kind == "c" else torch.float64
        self.invariants = dict(f["invariants"].items()) if "invariants" in f else {}
        self.grid = {k: v[()] for k, v in f["grid"].items()} if "grid" in f else {}
        self.stats = {k: v[()] for k, v in f["stats"].items()} if "stats" in f else {}
        dt = self.attrs.get("dt_save")
        self.dt_save = (
            float(dt)
            if dt is not None
            else float(np.diff(self.t[:2])[0])
            if self.t.size > 1
            else float("nan")
        )

    def make_system(self):
        """Rebuild the :class:`~physres.systems.System` that generated this file."""
        from .. import systems

        return systems.get(self.system_name, **self.system_params)

    def check_system(self):
        """Rebuild the file's system when its name is registered and check that the stored
        states have its ``state_shape`` and dtype; return the system (None when the name is
        not registered here). Raises :class:`FormatError` naming the file on a mismatch or
        on parameters that do not build the system."""
        from .. import systems

        if self.system_name not in systems.names():
            return None
        try:
            system = self.make_system()
        except (TypeError, ValueError) as exc:
            raise FormatError(
                f"{self.path}: attribute `system_params` "
                f"{json.dumps(self.system_params)} does not build system "
                f"{self.system_name!r}: {_first_line(exc)}"
            ) from None
        expected = tuple(system.state_shape)
        if self.state_shape != expected:
            raise FormatError(
                f"{self.path}: /states has state shape {self.state_shape}, but "
                f"system {self.system_name!r} with the file's `system_params` "
                f"has state_shape {expected}"
            )
        if self.dtype != system.dtype:
            raise FormatError(
                f"{self.path}: /states is {self.states.dtype}, but system "
                f"{self.system_name!r} has dtype "
                f"{str(system.dtype).removeprefix('torch.')}"
            )
        return system

    def verify(self, progress: bool = False) -> None:
        """Read every trajectory (checking HDF5's Fletcher-32 checksums); raise
        :class:`FormatError` naming the first unreadable one."""
        from tqdm.auto import tqdm

        for i in tqdm(
            range(len(self)), desc="verify", unit="traj", disable=not progress, leave=False
        ):
            try:
                x = self.states[i]
            except OSError as exc:
                raise FormatError(
                    f"{self.path}: trajectory {i} is corrupt: {_first_line(exc)}"
                ) from None
            if not np.isfinite(x).all():
                raise FormatError(f"{self.path}: trajectory {i} holds non-finite states")

    def __len__(self) -> int:
        return self.states.shape[0]

    def close(self) -> None:
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        return (
            f"TrajectoryFile({str(self.path)!r}, system={self.system_name!r}, "
            f"n_traj={len(self)}, n_t={self.t.size}, state_shape={self.state_shape})"
        )


def open(path) -> TrajectoryFile:  # noqa: A001 (the contract name physres.data.open)
    """Open a trajectory file lazily after checking format, version, shapes and dtype.

    Raises ``FileNotFoundError`` or :class:`~physres.FormatError` naming the file and the
    problem (not HDF5, truncated, wrong format tag or version, inconsistent shapes).
    """
    return TrajectoryFile(path)


def _attr(value):
    if isinstance(value, (bytes, str)):
        return _text(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__

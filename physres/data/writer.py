"""Atomic HDF5 writing: build the file under a temporary name in the destination directory,
``os.replace`` it into place only when complete. An interrupted write (exception, Ctrl-C)
removes the temporary file; a killed process leaves at most a hidden ``.NAME.*.tmp`` beside
the destination, never a partial file at it."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import h5py
import numpy as np

CHUNK_BYTES = 1 << 20  # a trajectory longer than this is chunked in time (still per trajectory)
COMPRESSIONS = ("gzip", "lzf", None)


def check_destination(path) -> Path:
    """The destination as a Path, after checking its directory exists and is writable."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"`path` must be a str or os.PathLike, got {type(path).__name__}")
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise IsADirectoryError(f"`path` {str(path)!r} is a directory; expected a file name")
    if not parent.is_dir():
        raise FileNotFoundError(f"`path` {str(path)!r}: directory {str(parent)!r} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(f"`path` {str(path)!r}: directory {str(parent)!r} is not writable")
    return path


@contextlib.contextmanager
def atomic_h5(path):
    """Yield an ``h5py.File`` open for writing; on success it becomes ``path`` atomically."""
    path = check_destination(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # the permissions a plain open() would give
    f = None
    try:
        f = h5py.File(tmp, "w")
        yield f
        f.close()
        os.replace(tmp, path)
    except BaseException:
        if f is not None:
            with contextlib.suppress(Exception):
                f.close()
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def create_states(f: h5py.File, n_traj: int, n_t: int, state_shape, dtype,
                  compression="gzip") -> h5py.Dataset:
    """``/states`` of shape ``(n_traj, n_t, *state_shape)``: one chunk per trajectory (or per
    time block of a trajectory when it exceeds ``CHUNK_BYTES``), compressed, checksummed."""
    if compression not in COMPRESSIONS:
        raise ValueError(f"`compression` must be one of {COMPRESSIONS}, got {compression!r}")
    frame = int(np.prod(state_shape)) * np.dtype(dtype).itemsize
    n_chunk = max(1, min(n_t, CHUNK_BYTES // max(frame, 1)))
    options = {"compression": compression, "shuffle": compression is not None}
    if compression == "gzip":
        options["compression_opts"] = 4
    return f.create_dataset("states", shape=(n_traj, n_t, *state_shape), dtype=dtype,
                            chunks=(1, n_chunk, *state_shape), fletcher32=True, **options)

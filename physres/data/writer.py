"""Atomic HDF5 writing that fails cleanly on a full disk.

A file that fits in memory (:func:`in_memory_limit`) is built by HDF5's in-memory ``core``
driver and written out as bytes by :func:`physres._io.write_bytes` (temporary file in the
destination directory, fsync, ``os.replace``): HDF5 never writes to the disk itself, so a full
disk is an ``OSError`` naming the file instead of a crash inside HDF5, and the free space is
checked against the exact size first. A larger file is written by HDF5 to a temporary file
after checking the free space against its uncompressed size. Either way the file appears at
its path only when complete; an interrupted write (exception, Ctrl-C, SIGTERM handled by
:func:`physres.data.generate`) removes the temporary file, and the hidden
``.NAME.<pid>.*.tmp`` of a killed process is removed by the next write to the same path.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import h5py
import numpy as np

from .. import _io

CHUNK_BYTES = 1 << 20  # a trajectory longer than this is chunked in time (still per trajectory)
COMPRESSIONS = ("gzip", "lzf", None)
IN_MEMORY_MAX = 2 << 30  # never build a file over 2 GiB in memory


def check_destination(path) -> Path:
    """The destination as a Path, after checking its directory exists and is writable."""
    return _io.destination(path, "path")


def in_memory_limit() -> int:
    """Largest file built in memory: a quarter of the available RAM, at most 2 GiB."""
    try:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        available = 1 << 30
    return int(min(IN_MEMORY_MAX, available // 4))


@contextlib.contextmanager
def atomic_h5(path, nbytes: int | None = None):
    """Yield an ``h5py.File`` open for writing; on success it becomes ``path`` atomically.

    ``nbytes``: the expected (uncompressed) size of the data, which decides between the
    in-memory build (default, and whenever it fits :func:`in_memory_limit`) and a temporary
    file on disk, whose free space is checked against it first.
    """
    path = check_destination(path)
    if nbytes is None or nbytes <= in_memory_limit():
        f = h5py.File(f"{path.name}.in-memory", "w", driver="core", backing_store=False)
        try:
            yield f
            f.flush()
            image = f.id.get_file_image()
        finally:
            with contextlib.suppress(Exception):
                f.close()
        _io.check_free_space(path, len(image), "the trajectory file")
        _io.write_bytes(path, image)
        return
    _io.check_free_space(path, nbytes, "the trajectory file")
    with _io.atomic_path(path) as tmp:
        f = h5py.File(tmp, "w")
        try:
            yield f
        finally:
            with contextlib.suppress(Exception):
                f.close()


def create_states(
    f: h5py.File, n_traj: int, n_t: int, state_shape, dtype, compression="gzip"
) -> h5py.Dataset:
    """``/states`` of shape ``(n_traj, n_t, *state_shape)``: one chunk per trajectory (or per
    time block of a trajectory when it exceeds ``CHUNK_BYTES``), compressed, checksummed."""
    if compression not in COMPRESSIONS:
        raise ValueError(f"`compression` must be one of {COMPRESSIONS}, got {compression!r}")
    frame = int(np.prod(state_shape)) * np.dtype(dtype).itemsize
    n_chunk = max(1, min(n_t, CHUNK_BYTES // max(frame, 1)))
    options = {"compression": compression, "shuffle": compression is not None}
    if compression == "gzip":
        options["compression_opts"] = 4
    return f.create_dataset(
        "states",
        shape=(n_traj, n_t, *state_shape),
        dtype=dtype,
        chunks=(1, n_chunk, *state_shape),
        fletcher32=True,
        **options,
    )

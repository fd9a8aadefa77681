"""HDF5 schema, version 1: one file holds one set of reference trajectories of one system.

=========================  ==========================================================
path                       content
=========================  ==========================================================
``/`` attrs                ``format``, ``format_version``, ``system``, ``system_params``
                           (JSON), ``reference_method``, ``rtol``, ``atol``, ``seed``,
                           ``physres_version``, ``created`` (+ ``t_end``, ``dt_save``)
``/t``                     float64 ``(n_t,)``
``/states``                ``(n_traj, n_t, *state_shape)`` float64 or complex128, chunked
                           per trajectory, compressed, Fletcher-32 checksummed
``/invariants/<name>``     ``(n_traj, n_t)``
``/grid/<axis>``           coordinates of grid systems
``/stats/<name>``          ``(n_traj,)`` reference cost: ``nfev``, ``njev``, ``wall_s``
``/normalization/<key>``   ``mean``, ``std`` of shape ``state_shape`` over the training
                           trajectories of one split (see :mod:`physres.data.windows`)
=========================  ==========================================================
"""

from __future__ import annotations

import json

import h5py
import numpy as np

from ..errors import FormatError

FORMAT = "physres-trajectories"
FORMAT_VERSION = 1
REQUIRED_ATTRS = (
    "format",
    "format_version",
    "system",
    "system_params",
    "reference_method",
    "rtol",
    "atol",
    "seed",
    "physres_version",
    "created",
)
STATE_DTYPES = (np.dtype(np.float64), np.dtype(np.complex128))


def validate(f: h5py.File, path) -> None:
    """Check an open file against schema v1; raise :class:`FormatError` naming ``path``."""

    def fail(what: str):
        raise FormatError(f"{path}: {what}")

    fmt = _text(f.attrs.get("format"))
    if fmt != FORMAT:
        fail(f"not a physres trajectory file (attribute `format` is {fmt!r}, expected {FORMAT!r})")
    version = f.attrs.get("format_version")
    if version is None or int(version) != FORMAT_VERSION:
        fail(
            f"unsupported format_version {_attr_text(version)}; this physres reads version "
            f"{FORMAT_VERSION}"
        )
    missing = [a for a in REQUIRED_ATTRS if a not in f.attrs]
    if missing:
        fail(f"missing attributes: {', '.join(missing)}")
    try:
        params = json.loads(_text(f.attrs["system_params"]))
    except (TypeError, ValueError):
        fail("attribute `system_params` is not valid JSON")
    if not isinstance(params, dict):
        fail("attribute `system_params` must be a JSON object")
    for name in ("t", "states"):
        if not isinstance(f.get(name), h5py.Dataset):
            fail(f"missing dataset /{name}")
    t, states = f["t"], f["states"]
    if t.ndim != 1 or t.dtype != np.float64 or t.shape[0] < 1:
        fail(f"/t must be float64 of shape (n_t,), got {t.dtype} {t.shape}")
    if states.dtype not in STATE_DTYPES:
        fail(f"/states must be float64 or complex128, got {states.dtype}")
    if states.ndim < 3 or states.shape[1] != t.shape[0]:
        fail(
            f"/states must have shape (n_traj, n_t={t.shape[0]}, *state_shape), got {states.shape}"
        )
    times = t[()]
    if not np.isfinite(times).all() or np.any(np.diff(times) <= 0):
        fail("/t must be finite and strictly increasing")
    for group, shape in (("invariants", states.shape[:2]), ("stats", states.shape[:1])):
        for name, ds in f.get(group, {}).items():
            if not isinstance(ds, h5py.Dataset) or ds.shape != shape:
                fail(
                    f"/{group}/{name} must have shape {shape}, "
                    f"got {getattr(ds, 'shape', 'a group')}"
                )


def _text(value) -> str | None:
    if isinstance(value, bytes):
        return value.decode()
    return None if value is None else str(value)


def split_key(fractions, seed: int) -> str:
    """Name of the ``/normalization`` entry for one split, e.g. ``seed0_0.8_0.1_0.1``."""
    return f"seed{int(seed)}_" + "_".join(f"{float(x):g}" for x in fractions)


def _attr_text(value) -> str:
    """An attribute for a message: ``2`` rather than ``np.int64(2)``."""
    if isinstance(value, np.generic):
        value = value.item()
    return repr(_text(value)) if isinstance(value, bytes) else repr(value)

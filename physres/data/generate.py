"""Generate a trajectory file: sample initial states, solve with scipy, write schema v1."""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import _checks, reference
from .._version import __version__
from .schema import FORMAT, FORMAT_VERSION, split_key
from .windows import DEFAULT_FRACTIONS, moments, split_indices
from .writer import atomic_h5, check_destination, create_states


def generate(system, path, n_traj: int = 64, t_end=None, dt_save=None, method=None, rtol=None,
             atol=None, workers: int = 1, seed: int = 0, executor=None, progress: bool = True,
             compression: str | None = "gzip"):
    """Write ``n_traj`` reference trajectories of ``system`` to ``path`` (HDF5 schema v1).

    Initial states are ``system.sample_initial(n_traj, seed)``; times ``0, dt_save, …`` up to
    ``t_end`` (defaults from the system's class attributes, as are ``method``, ``rtol``,
    ``atol``). Trajectories are solved by :func:`physres.reference.solve`'s machinery in
    ``workers`` processes or on ``executor`` and streamed to disk as they finish, so memory
    holds a few trajectories, not the file. States are identical byte for byte whatever the
    parallelism. The file appears at ``path`` only when complete (atomic rename).

    Parameters
    ----------
    system : System or str
        A system, or a registered name (built with default parameters).
    path : str or Path
        Destination; an existing file is replaced (only once the new one is complete).
    compression : "gzip", "lzf" or None

    Returns
    -------
    pathlib.Path, the written file.
    """
    from ..systems import System, get

    if isinstance(system, str):
        system = get(system)
    if not isinstance(system, System):
        raise TypeError(f"`system` must be a physres System or a registered name, "
                        f"got {type(system).__name__}")
    n_traj = _checks.positive_int("n_traj", n_traj)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"`seed` must be an int, got {type(seed).__name__}")
    seed = int(seed)
    t = _time_grid(system, t_end, dt_save)
    dt_save = float(t[1] - t[0])
    path = check_destination(path)
    x0 = system.sample_initial(n_traj, seed=seed)
    x0, t, method, rtol, atol = reference._check(system, x0, t, method, rtol, atol)
    _checks.positive_int("workers", workers)

    with atomic_h5(path) as f:
        f.attrs.update({
            "format": FORMAT, "format_version": FORMAT_VERSION, "system": system.name,
            "system_params": json.dumps(system.params), "reference_method": method,
            "rtol": rtol, "atol": atol, "seed": seed, "physres_version": __version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "t_end": float(t[-1]), "dt_save": dt_save,
        })
        f.create_dataset("t", data=t)
        states = create_states(f, n_traj, t.size, system.state_shape, x0.dtype, compression)
        _write_grid(f, system)
        stats = {"nfev": np.zeros(n_traj, np.int64), "njev": np.zeros(n_traj, np.int64),
                 "wall_s": np.zeros(n_traj)}
        invariants: dict = {}  # name -> dataset, created with the first trajectory
        bar = tqdm(total=n_traj, desc=f"generate {system.name}", unit="traj",
                   disable=not progress)
        with bar:
            for i, y, info in reference.iter_solve(system, x0, t, method, rtol, atol,
                                                   workers=workers, executor=executor):
                states[i] = y
                for key in stats:
                    stats[key][i] = info[key]
                _write_invariants(f, invariants, system, i, y, n_traj)
                bar.update()
        for key, value in stats.items():
            f.create_dataset(f"stats/{key}", data=value)
        train = split_indices(n_traj, DEFAULT_FRACTIONS, 0)["train"]
        mean, std = moments(states, train)
        group = f.create_group(f"normalization/{split_key(DEFAULT_FRACTIONS, 0)}")
        group.create_dataset("mean", data=mean)
        group.create_dataset("std", data=std)
        group.attrs["trajectories"] = train
    return path


def _time_grid(system, t_end, dt_save) -> np.ndarray:
    t_end = _checks.positive("t_end", system.t_end if t_end is None else t_end)
    dt_save = _checks.positive("dt_save", system.dt_save if dt_save is None else dt_save)
    if dt_save > t_end:
        raise ValueError(f"`dt_save` ({dt_save:g}) must not exceed `t_end` ({t_end:g})")
    n_t = math.floor(t_end / dt_save * (1 + 1e-12)) + 1
    return dt_save * np.arange(n_t, dtype=np.float64)


def _write_grid(f, system) -> None:
    grid = getattr(system, "grid", None)
    if grid is None:
        return
    axes = grid if isinstance(grid, dict) else {"x": grid}
    for axis, values in axes.items():
        if isinstance(values, torch.Tensor):
            values = values.detach().cpu().numpy()
        f.create_dataset(f"grid/{axis}", data=np.asarray(values))


def _write_invariants(f, datasets, system, i, y, n_traj) -> None:
    with torch.no_grad():
        values = system.invariants(torch.from_numpy(y))  # frames as the batch
    for name, v in values.items():
        v = v.detach().cpu().numpy()
        if name not in datasets:
            datasets[name] = f.create_dataset(f"invariants/{name}", shape=(n_traj, y.shape[0]),
                                              dtype=v.dtype, chunks=(1, y.shape[0]))
        datasets[name][i] = v

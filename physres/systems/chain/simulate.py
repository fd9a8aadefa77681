"""Langevin trajectory files: a bead chain simulated at temperature, written as HDF5 schema v1.

scipy's deterministic references (:func:`physres.data.generate`) cover the gradient flow; at
``temperature > 0`` the reference is a seeded Langevin run with a small step, recorded with the
stepper's name as ``reference_method`` (``rtol``/``atol`` are 0: fixed steps) and the step as
the ``dt`` attribute.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone

import numpy as np
import torch

from ... import _checks
from ..._version import __version__
from ...rollout import rollout


def simulate(system, path, n_traj: int = 32, t_end: float | None = None, dt: float = 1e-3,
             dt_save: float | None = None, stepper: str | None = None, seed: int = 0,
             x0: torch.Tensor | None = None, progress: bool = True):
    """Write ``n_traj`` Langevin trajectories of a ``bead_chain`` system to ``path``.

    Parameters
    ----------
    system : BeadChain, with its ``temperature`` and ``friction``
    path : destination (written atomically)
    t_end, dt_save : defaults from the system; ``dt``: the Langevin step (``dt_save`` must be a
        multiple of it)
    stepper : ``"euler_maruyama"`` (default, overdamped), ``"baoab"`` (underdamped), or a
        deterministic stepper such as ``"rk4"`` for the gradient flow at ``temperature = 0``
    seed : seeds both the initial states (``system.sample_initial``) and the noise
    x0 : optional initial states (n_traj, *state_shape) instead of ``sample_initial``

    Returns
    -------
    pathlib.Path
    """
    from ...data.schema import FORMAT, FORMAT_VERSION, split_key
    from ...data.windows import DEFAULT_FRACTIONS, moments, split_indices
    from ...data.writer import atomic_h5, check_destination, create_states
    from ...steppers import get

    n_traj = _checks.positive_int("n_traj", n_traj)
    dt = _checks.positive("dt", dt)
    t_end = _checks.positive("t_end", system.t_end if t_end is None else t_end)
    dt_save = _checks.positive("dt_save", system.dt_save if dt_save is None else dt_save)
    every = round(dt_save / dt)
    if every < 1 or not math.isclose(every * dt, dt_save, rel_tol=1e-9):
        raise ValueError(f"`dt_save` ({dt_save:g}) must be a multiple of `dt` ({dt:g})")
    n_save = math.floor(t_end / dt_save * (1 + 1e-12))
    stepper = stepper or ("baoab" if system.underdamped else "euler_maruyama")
    path = check_destination(path)
    if x0 is None:
        x0 = system.sample_initial(n_traj, seed=seed)
    x0 = _checks.state("x0", x0, system.state_shape)
    langevin = stepper in ("euler_maruyama", "baoab")
    if not langevin and system.temperature > 0:
        raise ValueError(f"`stepper` {stepper!r} is deterministic but the system's temperature "
                         f"is {system.temperature:g}; use 'euler_maruyama' or 'baoab'")
    step = get(stepper, system.rhs, **({"seed": seed} if langevin else {}))
    with torch.no_grad():
        traj = rollout(step, x0, dt, n_save * every, save_every=every, progress=progress)
    states = traj.numpy()
    t = dt_save * np.arange(n_save + 1, dtype=np.float64)
    with atomic_h5(path) as f:
        f.attrs.update({
            "format": FORMAT, "format_version": FORMAT_VERSION, "system": system.name,
            "system_params": json.dumps(system.params), "reference_method": stepper,
            "rtol": 0.0, "atol": 0.0, "seed": seed, "physres_version": __version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "t_end": float(t[-1]), "dt_save": dt_save, "dt": dt,
        })
        f.create_dataset("t", data=t)
        ds = create_states(f, n_traj, t.size, system.state_shape, states.dtype)
        ds[...] = states
        with torch.no_grad():
            inv = system.invariants(traj.reshape(-1, *system.state_shape))
        for name, v in inv.items():
            f.create_dataset(f"invariants/{name}", data=v.reshape(n_traj, -1).numpy())
        train = split_indices(n_traj, DEFAULT_FRACTIONS, 0)["train"]
        mean, std = moments(ds, train)
        group = f.create_group(f"normalization/{split_key(DEFAULT_FRACTIONS, 0)}")
        group.create_dataset("mean", data=mean)
        group.create_dataset("std", data=std)
        group.attrs["trajectories"] = train
    return path

"""Fixed-step trajectories of a bead chain: Langevin at temperature, or the gradient flow.

scipy's deterministic references cover the gradient flow; at ``temperature > 0`` the reference
is a seeded Langevin run with a small step. This module returns the trajectories as arrays;
:func:`physres.data.generate` writes them as HDF5 schema v1 files (``reference_method`` the
stepper's name, ``rtol``/``atol`` 0: fixed steps, the step as the ``dt`` attribute).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from ... import _checks
from ...rollout import rollout
from ...steppers import get

LANGEVIN = ("euler_maruyama", "baoab")


@dataclass(frozen=True)
class Trajectories:
    """Fixed-step trajectories of a system.

    Attributes
    ----------
    t : numpy.ndarray, shape (n_t,), the saved times ``0, dt_save, …``
    states : Tensor, shape (n_traj, n_t, *state_shape)
    stepper : str, the stepper's registered name
    dt : float, the step
    nfev : int, field evaluations (each on the whole batch)
    wall_s : float, wall time of the run
    """

    t: np.ndarray
    states: torch.Tensor
    stepper: str
    dt: float
    nfev: int
    wall_s: float


def trajectories(
    system,
    n_traj: int = 32,
    t_end: float | None = None,
    dt: float = 1e-3,
    dt_save: float | None = None,
    stepper: str | None = None,
    seed: int = 0,
    x0: torch.Tensor | None = None,
    progress: bool = True,
) -> Trajectories:
    """``n_traj`` fixed-step trajectories of a ``bead_chain`` system.

    Parameters
    ----------
    system : BeadChain, with its ``temperature`` and ``friction``
    t_end, dt_save : defaults from the system; ``dt``: the step (``dt_save`` must be a
        multiple of it)
    stepper : ``"euler_maruyama"`` (default, overdamped), ``"baoab"`` (underdamped), or a
        deterministic stepper such as ``"rk4"`` for the gradient flow at ``temperature = 0``
    seed : seeds both the initial states (``system.sample_initial``) and the noise
    x0 : optional initial states (n_traj, *state_shape) instead of ``sample_initial``

    Returns
    -------
    Trajectories
    """
    n_traj = _checks.positive_int("n_traj", n_traj)
    dt = _checks.positive("dt", dt)
    t_end = _checks.positive("t_end", system.t_end if t_end is None else t_end)
    dt_save = _checks.positive("dt_save", system.dt_save if dt_save is None else dt_save)
    every = round(dt_save / dt)
    if every < 1 or not math.isclose(every * dt, dt_save, rel_tol=1e-9):
        raise ValueError(f"`dt_save` ({dt_save:g}) must be a multiple of `dt` ({dt:g})")
    n_save = math.floor(t_end / dt_save * (1 + 1e-12))
    if n_save < 1:
        raise ValueError(f"`dt_save` ({dt_save:g}) must not exceed `t_end` ({t_end:g})")
    stepper = stepper or ("baoab" if system.underdamped else "euler_maruyama")
    langevin = stepper in LANGEVIN
    if not langevin and system.temperature > 0:
        raise ValueError(
            f"`stepper` {stepper!r} is deterministic but the system's temperature "
            f"is {system.temperature:g}; use 'euler_maruyama' or 'baoab'"
        )
    if x0 is None:
        x0 = system.sample_initial(n_traj, seed=seed)
    x0 = _checks.state("x0", x0, system.state_shape)
    if x0.shape[0] != n_traj:
        raise ValueError(f"`x0` holds {x0.shape[0]} initial states but `n_traj` is {n_traj}")
    step = get(stepper, system.rhs, **({"seed": seed} if langevin else {}))
    start = time.perf_counter()
    with torch.no_grad():
        states = rollout(step, x0, dt, n_save * every, save_every=every, progress=progress)
    return Trajectories(
        t=dt_save * np.arange(n_save + 1, dtype=np.float64),
        states=states,
        stepper=stepper,
        dt=dt,
        nfev=step.nfev,
        wall_s=time.perf_counter() - start,
    )

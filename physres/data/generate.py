"""Generate a trajectory file: sample initial states, solve them, write schema v1.

Deterministic systems are solved by scipy (:mod:`physres.reference`); a bead chain at
temperature (or any bead chain given a fixed-step ``stepper`` or ``dt``) is run by the chain's
fixed-step simulator (:func:`physres.systems.chain.trajectories`). Both are written here, by
one writer.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import threading
from datetime import datetime, timezone

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import _checks, _io, reference
from .._version import __version__
from .schema import FORMAT, FORMAT_VERSION, split_key
from .windows import DEFAULT_FRACTIONS, moments, split_indices
from .writer import atomic_h5, check_destination, create_states


def generate(
    system,
    path,
    n_traj: int = 64,
    t_end=None,
    dt_save=None,
    method=None,
    rtol=None,
    atol=None,
    workers: int = 1,
    seed: int = 0,
    executor=None,
    progress: bool = True,
    compression: str | None = "gzip",
    *,
    dt=None,
    stepper=None,
    x0=None,
):
    """Write ``n_traj`` reference trajectories of ``system`` to ``path`` (HDF5 schema v1).

    Initial states are ``system.sample_initial(n_traj, seed)`` (or ``x0``); times
    ``0, dt_save, …`` up to ``t_end`` (defaults from the system's class attributes, as are
    ``method``, ``rtol``, ``atol``). Trajectories are solved by
    :func:`physres.reference.solve`'s machinery in ``workers`` processes or on ``executor``
    and streamed to disk as they finish, so memory holds a few trajectories, not the file.
    States are identical byte for byte whatever the parallelism. The file appears at ``path``
    only when complete (atomic rename); files that fit in memory are built there and written
    as bytes, so a full disk is a clean ``OSError`` (see :mod:`physres.data.writer`).

    Fixed-step references (bead chains): when the system is stochastic (a ``bead_chain`` at
    ``temperature > 0``) or ``stepper`` or ``dt`` is given, the trajectories come from
    :func:`physres.systems.chain.trajectories` — a seeded Langevin run (``euler_maruyama``,
    or ``baoab`` when underdamped) or a deterministic stepper such as ``"rk4"`` on the
    gradient flow, with step ``dt`` (default 1e-3; ``dt_save`` a multiple of it). The file
    records the stepper as ``reference_method``, ``rtol = atol = 0`` and the ``dt``
    attribute; ``method``, ``rtol``, ``atol``, ``workers`` and ``executor`` do not apply.

    Robustness: a second ``generate`` to the same path while one runs is refused (the lock
    file ``.NAME.lock`` beside it is held); SIGTERM stops the workers and removes the
    temporary file before exiting; worker processes die with their parent (Linux
    ``PR_SET_PDEATHSIG``, elsewhere a parent check every second); temporary files left by a
    killed run are removed by the next run to the same path.

    Parameters
    ----------
    system : System or str
        A system, or a registered name (built with default parameters).
    path : str or Path
        Destination; an existing file is replaced (only once the new one is complete).
    compression : "gzip", "lzf" or None
    dt, stepper : the fixed-step reference (bead chains), see above
    x0 : Tensor, shape (n_traj, *state_shape), optional
        Initial states instead of ``system.sample_initial(n_traj, seed)``.

    Returns
    -------
    pathlib.Path, the written file.
    """
    from ..systems import System, get
    from ..systems.chain import BeadChain

    if isinstance(system, str):
        system = get(system)
    if not isinstance(system, System):
        raise TypeError(
            f"`system` must be a physres System or a registered name, got {type(system).__name__}"
        )
    n_traj = _checks.positive_int("n_traj", n_traj)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"`seed` must be an int, got {type(seed).__name__}")
    seed = int(seed)
    fixed_step = (
        stepper is not None
        or dt is not None
        or (isinstance(system, BeadChain) and system.temperature > 0)
    )
    if fixed_step:
        if not isinstance(system, BeadChain):
            raise ValueError(
                f"`stepper` and `dt` give a fixed-step reference, which is "
                f"available for bead_chain systems; {system.name!r} is solved by "
                "scipy (pass `method`, `rtol`, `atol` instead)"
            )
        given = [
            name
            for name, value in (
                ("method", method),
                ("rtol", rtol),
                ("atol", atol),
                ("executor", executor),
            )
            if value is not None
        ]
        if workers != 1:
            given.append("workers")
        if given:
            raise ValueError(
                f"{', '.join(f'`{g}`' for g in given)} apply to scipy references"
                f"; the fixed-step reference of {system.name!r} (temperature "
                f"{system.temperature:g}) takes `stepper` and `dt`"
            )
        path = check_destination(path)
        return _write_fixed_step(
            system, path, n_traj, t_end, dt_save, dt, stepper, seed, x0, progress, compression
        )
    t = _time_grid(system, t_end, dt_save)
    dt_save = float(t[1] - t[0])
    path = check_destination(path)
    if x0 is None:
        x0 = system.sample_initial(n_traj, seed=seed)
    elif len(x0) != n_traj:
        raise ValueError(f"`x0` holds {len(x0)} initial states but `n_traj` is {n_traj}")
    x0, t, method, rtol, atol = reference._check(system, x0, t, method, rtol, atol)
    _checks.positive_int("workers", workers)
    if executor is not None and workers != 1:
        raise ValueError(f"pass either `workers` (got {workers}) or `executor`, not both")

    with contextlib.ExitStack() as stack:
        stack.enter_context(_io.exclusive_lock(path, "`generate`"))
        stack.enter_context(_terminate_on_sigterm())
        pool = None
        if executor is None and workers > 1 and method != "expm":
            pool = stack.enter_context(_worker_pool(workers))
        with atomic_h5(path, _estimated_bytes(system, n_traj, t.size)) as f:
            _write_attrs(f, system, t, method, rtol, atol, seed)
            states = create_states(f, n_traj, t.size, system.state_shape, x0.dtype, compression)
            _write_grid(f, system)
            stats = {
                "nfev": np.zeros(n_traj, np.int64),
                "njev": np.zeros(n_traj, np.int64),
                "wall_s": np.zeros(n_traj),
            }
            invariants: dict = {}  # name -> dataset, created with the first trajectory
            bar = tqdm(
                total=n_traj, desc=f"generate {system.name}", unit="traj", disable=not progress
            )
            with bar:
                for i, y, info in reference.iter_solve(
                    system, x0, t, method, rtol, atol, executor=pool or executor
                ):
                    states[i] = y
                    for key in stats:
                        stats[key][i] = info[key]
                    _write_invariants(f, invariants, system, i, y, n_traj)
                    bar.update()
            _write_stats_and_normalization(f, stats, states, n_traj)
    return path


def _write_fixed_step(
    system, path, n_traj, t_end, dt_save, dt, stepper, seed, x0, progress, compression
):
    """The fixed-step reference of a bead chain (see :func:`generate`), same layout."""
    from ..systems.chain import trajectories

    with contextlib.ExitStack() as stack:
        stack.enter_context(_io.exclusive_lock(path, "`generate`"))
        stack.enter_context(_terminate_on_sigterm())
        run = trajectories(
            system,
            n_traj,
            t_end=t_end,
            dt_save=dt_save,
            stepper=stepper,
            seed=seed,
            x0=x0,
            progress=progress,
            **({} if dt is None else {"dt": dt}),
        )
        x = run.states.detach().cpu().numpy()  # (n_traj, n_t, *state_shape)
        with atomic_h5(path, _estimated_bytes(system, n_traj, run.t.size)) as f:
            _write_attrs(f, system, run.t, run.stepper, 0.0, 0.0, seed, dt=run.dt)
            states = create_states(f, n_traj, run.t.size, system.state_shape, x.dtype, compression)
            states[...] = x
            _write_grid(f, system)
            invariants: dict = {}
            for i in range(n_traj):
                _write_invariants(f, invariants, system, i, x[i], n_traj)
            stats = {
                "nfev": np.full(n_traj, run.nfev, np.int64),  # batched: each saw all
                "njev": np.zeros(n_traj, np.int64),
                "wall_s": np.full(n_traj, run.wall_s / n_traj),
            }
            _write_stats_and_normalization(f, stats, states, n_traj)
    return path


def _write_attrs(f, system, t, method, rtol, atol, seed, **extra) -> None:
    """The root attributes of schema v1, and ``/t``."""
    f.attrs.update(
        {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "system": system.name,
            "system_params": json.dumps(system.params),
            "reference_method": method,
            "rtol": rtol,
            "atol": atol,
            "seed": seed,
            "physres_version": __version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "t_end": float(t[-1]),
            "dt_save": float(t[1] - t[0]),
            **extra,
        }
    )
    f.create_dataset("t", data=t)


def _write_stats_and_normalization(f, stats, states, n_traj) -> None:
    """``/stats/<name>`` and the training split's normalisation."""
    for key, value in stats.items():
        f.create_dataset(f"stats/{key}", data=value)
    train = split_indices(n_traj, DEFAULT_FRACTIONS, 0)["train"]
    mean, std = moments(states, train)
    group = f.create_group(f"normalization/{split_key(DEFAULT_FRACTIONS, 0)}")
    group.create_dataset("mean", data=mean)
    group.create_dataset("std", data=std)
    group.attrs["trajectories"] = train


def _estimated_bytes(system, n_traj: int, n_t: int) -> int:
    """Uncompressed size of /states and /invariants (an upper bound of the file's data)."""
    itemsize = 16 if system.dtype.is_complex else 8
    frame = int(np.prod(system.state_shape)) * itemsize
    return n_traj * n_t * (frame + 8 * 4) + 64 * 1024


class _Terminated(SystemExit):
    """Raised by the SIGTERM handler so that every cleanup (temporary file, workers) runs."""


@contextlib.contextmanager
def _terminate_on_sigterm():
    """In the main thread, turn SIGTERM into :class:`_Terminated` (exit status 143) for the
    block, when SIGTERM still has its default action; restore it afterwards."""
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    ):
        yield
        return

    def handler(signum, frame):
        raise _Terminated(128 + signum)

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _die_with_parent(parent: int | None) -> None:
    """Worker initializer: one torch thread, and exit when the parent process dies.

    ``parent``: the pid that forked this worker (fork start method), or None when it is not
    known here (forkserver: the server is the parent, and it exits with the main process)."""
    torch.set_num_threads(1)
    if parent is None:
        parent = os.getppid()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(1, signal.SIGKILL, 0, 0, 0) != 0:  # PR_SET_PDEATHSIG
            raise OSError(ctypes.get_errno(), "prctl")
    except (OSError, AttributeError, TypeError):

        def watch():
            while True:
                threading.Event().wait(1.0)
                if os.getppid() != parent:
                    os._exit(1)

        threading.Thread(target=watch, daemon=True).start()
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


@contextlib.contextmanager
def _worker_pool(workers: int):
    """A process pool whose workers die with this process; on any exception (SIGTERM,
    Ctrl-C, an error) the workers are terminated at once rather than awaited."""
    import multiprocessing
    import sys
    from concurrent.futures import ProcessPoolExecutor

    method = "fork" if sys.platform == "linux" and sys.version_info < (3, 12) else "forkserver"
    if method not in multiprocessing.get_all_start_methods():
        method = "spawn"
    context = multiprocessing.get_context(method)
    pool = ProcessPoolExecutor(
        workers,
        mp_context=context,
        initializer=_die_with_parent,
        initargs=(os.getpid() if method != "forkserver" else None,),
    )
    try:
        yield pool
    except BaseException:
        processes = list(getattr(pool, "_processes", {}).values())
        for process in processes:
            with contextlib.suppress(Exception):
                process.terminate()
        pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            with contextlib.suppress(Exception):
                process.join(5)
        raise
    pool.shutdown(wait=True)


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
            datasets[name] = f.create_dataset(
                f"invariants/{name}",
                shape=(n_traj, y.shape[0]),
                dtype=v.dtype,
                chunks=(1, y.shape[0]),
            )
        datasets[name][i] = v

"""Reference trajectories from scipy: ``solve_ivp`` per trajectory (or on the stacked batch),
or ``expm_multiply``.

>>> system = physres.systems.get("lorenz63")
>>> x = physres.reference.solve(system, system.sample_initial(4), np.linspace(0, 1, 101))
>>> x.shape
(4, 101, 3)

Each trajectory is an independent task, so the batch runs serially, in ``workers`` processes,
or on any :class:`concurrent.futures.Executor` (a ``dask.distributed`` client's
``get_executor()`` spreads it over a cluster). Every trajectory is solved with torch limited to
one thread, so serial and parallel runs give identical bytes. ``stack=True`` instead solves
the batch as one system, every trajectory in one state vector and the field evaluated on the
whole batch at once: for statistics references (many trajectories of a cheap field) one such
solve costs little more than one trajectory.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import sys
import time
from collections.abc import Iterator
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed

import numpy as np
import torch
from tqdm.auto import tqdm

from . import _checks
from .errors import ReferenceSolveError  # re-exported: raised here

IVP_METHODS = ("RK23", "RK45", "DOP853", "Radau", "BDF", "LSODA")
IMPLICIT_METHODS = ("Radau", "BDF", "LSODA")
METHODS = (*IVP_METHODS, "expm")

__all__ = ["IVP_METHODS", "METHODS", "ReferenceSolveError", "solve"]


def solve(
    system,
    x0,
    t_eval,
    method=None,
    rtol=None,
    atol=None,
    workers=1,
    executor=None,
    progress=False,
    return_stats=False,
    stack=False,
):
    """Reference states of ``system`` from each initial state in ``x0`` at times ``t_eval``.

    Parameters
    ----------
    system : physres.systems.System
    x0 : Tensor or ndarray, shape (batch, *state_shape)
    t_eval : array-like, shape (n_t,)
        Strictly increasing; integration runs from ``t_eval[0]`` to ``t_eval[-1]``.
    method : str, optional
        A ``solve_ivp`` method (``RK23 RK45 DOP853 Radau BDF LSODA``) or ``"expm"``
        (``scipy.sparse.linalg.expm_multiply``, for a time-independent ``linear_operator``).
        Default ``system.reference_method``. Implicit methods get the system's analytic
        ``jac`` when it has one; complex states are integrated through a real view there.
    rtol, atol : float, optional
        Defaults ``system.reference_rtol`` and ``system.reference_atol``.
    workers : int
        Processes to spread trajectories over (1 = in this process).
    executor : concurrent.futures.Executor, optional
        Run the trajectories on this executor instead (``workers`` must then be 1).
    progress : bool
        Show a progress bar over trajectories.
    return_stats : bool
        Also return ``{"nfev": (batch,), "njev": (batch,), "wall_s": (batch,)}``.
    stack : bool
        Solve the trajectories as one stacked system (explicit methods ``RK23 RK45 DOP853``
        only): one ``solve_ivp`` call on the state ``(x_1, …, x_batch)``, the field evaluated
        on the batch at once (``system.numpy_rhs_batch``); ``workers`` > 1 splits the batch
        into that many groups, one such call each (on ``executor``, one group). A group shares
        one step sequence, chosen on the root mean square of the scaled error estimate over
        the whole group, so ``rtol`` and ``atol`` are divided by √(group size): a trajectory's
        own root-mean-square estimate then stays within the tolerances it would get alone
        (exactly so for RK23 and RK45; DOP853 blends its 5th- and 3rd-order estimates, for
        which this holds when they are in proportion across the group). Every trajectory of a
        group gets the group's ``nfev`` and an even share of its ``wall_s``. Chaotic
        trajectories then differ from the per-trajectory solve's after a few Lyapunov times
        (as two tolerances' do), not in their statistics.

    Returns
    -------
    ndarray, shape (batch, n_t, *state_shape), in the system's dtype (and the stats dict).

    Raises
    ------
    ReferenceSolveError
        When scipy fails on a trajectory: the message names its index and scipy's message.
    """
    x0, t_eval, method, rtol, atol = _check(system, x0, t_eval, method, rtol, atol)
    if stack:
        return _solve_stacked(
            system, x0, t_eval, method, rtol, atol, workers, executor, progress, return_stats
        )
    batch = x0.shape[0]
    out = np.empty((batch, t_eval.size, *system.state_shape), dtype=x0.dtype)
    stats = {
        "nfev": np.zeros(batch, np.int64),
        "njev": np.zeros(batch, np.int64),
        "wall_s": np.zeros(batch),
    }
    for i, y, info in iter_solve(
        system,
        x0,
        t_eval,
        method,
        rtol,
        atol,
        workers=workers,
        executor=executor,
        progress=progress,
    ):
        out[i] = y
        for key in stats:
            stats[key][i] = info[key]
    return (out, stats) if return_stats else out


def iter_solve(
    system,
    x0: np.ndarray,
    t_eval: np.ndarray,
    method: str,
    rtol: float,
    atol: float,
    *,
    workers=1,
    executor=None,
    progress=False,
    desc="reference",
) -> Iterator[tuple[int, np.ndarray, dict]]:
    """Yield ``(index, states (n_t, *state_shape), stats)`` as trajectories finish.

    Arguments must already be checked (see :func:`solve`); used by :func:`physres.data.generate`
    to stream trajectories to disk. ``"expm"`` solves the whole batch in one call (its cost is
    shared evenly; it counts no function evaluations).
    """
    if method == "expm":
        states, wall = _expm(system, x0, t_eval)
        for i in range(x0.shape[0]):
            yield i, states[i], {"nfev": 0, "njev": 0, "wall_s": wall / x0.shape[0]}
        return
    workers = _checked_pool(workers, executor)
    args = (system, t_eval, method, rtol, atol)
    bar = tqdm(total=x0.shape[0], desc=desc, unit="traj", disable=not progress, leave=False)
    with bar, contextlib.ExitStack() as stack:
        if executor is None and workers > 1:
            executor = _process_pool(workers)
            stack.callback(executor.shutdown, wait=True, cancel_futures=True)
        if executor is None:
            for i in range(x0.shape[0]):
                yield i, *_solve_one(i, x0[i], *args)
                bar.update()
            return
        futures = {executor.submit(_solve_one, i, x0[i], *args): i for i in range(x0.shape[0])}
        try:
            for future in as_completed(futures):
                yield futures[future], *future.result()
                bar.update()
        finally:
            for future in futures:
                future.cancel()


# --- internals -----------------------------------------------------------------------------


def _check(system, x0, t_eval, method, rtol, atol):
    from .systems import System

    if not isinstance(system, System):
        raise TypeError(f"`system` must be a physres.systems.System, got {type(system).__name__}")
    if isinstance(x0, torch.Tensor):
        x0 = x0.detach().cpu().numpy()
    x0 = np.asarray(x0)
    if x0.shape[1:] != tuple(system.state_shape) or x0.ndim < 2:
        raise ValueError(
            f"`x0` must have shape (batch, {', '.join(map(str, system.state_shape))})"
            f", got {x0.shape}"
        )
    dtype = np.complex128 if system.dtype.is_complex else np.float64
    if np.iscomplexobj(x0) and dtype != np.complex128:
        raise TypeError(f"`x0` is complex but {system.name} has real states ({system.dtype})")
    x0 = np.ascontiguousarray(x0, dtype=dtype)
    if not np.isfinite(x0).all():
        raise ValueError("`x0` contains non-finite values (nan or inf)")
    t_eval = np.asarray(t_eval, dtype=np.float64)
    if t_eval.ndim != 1 or t_eval.size < 2 or not np.all(np.diff(t_eval) > 0):
        raise ValueError(
            f"`t_eval` must be a strictly increasing 1-d array of at least 2 times, "
            f"got shape {t_eval.shape}"
        )
    if not np.isfinite(t_eval).all():
        raise ValueError("`t_eval` contains non-finite times")
    method = system.reference_method if method is None else method
    if method not in METHODS:
        raise ValueError(f"`method` must be one of {', '.join(METHODS)}, got {method!r}")
    rtol = _checks.positive("rtol", system.reference_rtol if rtol is None else rtol)
    atol = _checks.positive("atol", system.reference_atol if atol is None else atol)
    return x0, t_eval, method, rtol, atol


def _checked_pool(workers, executor) -> int:
    """``workers`` checked against ``executor`` (one or the other); returns ``workers``."""
    workers = _checks.positive_int("workers", workers)
    if executor is not None and workers != 1:
        raise ValueError(f"pass either `workers` (got {workers}) or `executor`, not both")
    if executor is not None and not isinstance(executor, Executor):
        raise TypeError(
            f"`executor` must be a concurrent.futures.Executor, got {type(executor).__name__}"
        )
    return workers


def _solve_one(index, y0, system, t_eval, method, rtol, atol):
    """One trajectory with ``solve_ivp``: ``(states (n_t, *state_shape), stats)``."""
    from scipy.integrate import solve_ivp  # here, not at import: scipy.integrate is heavy

    shape = (t_eval.size, *system.state_shape)
    fun, jac = system.numpy_rhs, None
    if method in IMPLICIT_METHODS and system.jacobian is not None and not np.iscomplexobj(y0):
        jac = system.numpy_jacobian
    y_init = y0.reshape(-1)
    n = y_init.size
    real_view = np.iscomplexobj(y0) and method in IMPLICIT_METHODS
    if real_view:  # implicit scipy methods are real-only: integrate (Re y, Im y)
        fun = _RealView(system.numpy_rhs, n)
        y_init = np.concatenate([y_init.real, y_init.imag])
    options = {"jac": jac} if jac is not None else {}
    start = time.perf_counter()
    with _one_thread():
        sol = solve_ivp(
            fun,
            (t_eval[0], t_eval[-1]),
            y_init,
            method=method,
            t_eval=t_eval,
            rtol=rtol,
            atol=atol,
            **options,
        )
    wall = time.perf_counter() - start
    if sol.status != 0 or sol.y.shape[1] != t_eval.size:
        reached = sol.t[-1] if sol.t.size else t_eval[0]
        raise ReferenceSolveError(
            f"trajectory {index}: {method} failed after t = {reached:.6g} "
            f"(last saved time): {sol.message}",
            index,
        )
    y = sol.y[:n] + 1j * sol.y[n:] if real_view else sol.y
    if not np.isfinite(y).all():
        raise ReferenceSolveError(f"trajectory {index}: {method} produced non-finite states", index)
    states = np.ascontiguousarray(y.T).reshape(shape)
    return states, {"nfev": sol.nfev, "njev": sol.njev, "wall_s": wall}


def _solve_stacked(system, x0, t_eval, method, rtol, atol, workers, executor, progress, stats):
    """:func:`solve` with ``stack=True``: ``workers`` groups of trajectories, each one system."""
    if method not in ("RK23", "RK45", "DOP853"):
        raise ValueError(
            f"`stack=True` needs an explicit method (RK23, RK45 or DOP853), got {method!r}"
        )
    workers = _checked_pool(workers, executor)
    batch = x0.shape[0]
    groups = [g for g in np.array_split(np.arange(batch), min(workers, batch)) if g.size]
    out = np.empty((batch, t_eval.size, *system.state_shape), dtype=x0.dtype)
    info = {"nfev": np.zeros(batch, np.int64), "njev": np.zeros(batch, np.int64)}
    info["wall_s"] = np.zeros(batch)
    args = (system, t_eval, method, rtol, atol)
    bar = tqdm(total=batch, desc="reference", unit="traj", disable=not progress, leave=False)
    with bar, contextlib.ExitStack() as es:
        if executor is None and len(groups) > 1:
            executor = _process_pool(len(groups))
            es.callback(executor.shutdown, wait=True, cancel_futures=True)
        if executor is None:
            results = ((g, _solve_group(g, x0[g], *args)) for g in groups)
        else:
            futures = {
                executor.submit(_solve_group, g, x0[g], *args): k for k, g in enumerate(groups)
            }
            results = ((groups[futures[f]], f.result()) for f in as_completed(futures))
        for g, (y, nfev, wall) in results:
            out[g] = y
            info["nfev"][g], info["wall_s"][g] = nfev, wall / g.size
            bar.update(g.size)
    return (out, info) if stats else out


def _solve_group(indices, y0, system, t_eval, method, rtol, atol):
    """Trajectories ``y0`` (group, *state_shape) as one ``solve_ivp`` system."""
    from scipy.integrate import solve_ivp

    shape = (y0.shape[0], *system.state_shape)

    def fun(t, y):
        return system.numpy_rhs_batch(t, y.reshape(shape)).reshape(-1)

    shrink = np.sqrt(y0.shape[0])  # RMS over the group ≤ 1 ⇒ each trajectory's ≤ 1 unscaled
    start = time.perf_counter()
    with _one_thread():
        sol = solve_ivp(
            fun,
            (t_eval[0], t_eval[-1]),
            y0.reshape(-1),
            method=method,
            t_eval=t_eval,
            rtol=rtol / shrink,
            atol=atol / shrink,
        )
    wall = time.perf_counter() - start
    first = int(indices[0])
    if sol.status != 0 or sol.y.shape[1] != t_eval.size:
        reached = sol.t[-1] if sol.t.size else t_eval[0]
        raise ReferenceSolveError(
            f"trajectories {first}..{int(indices[-1])} (stacked): {method} failed after "
            f"t = {reached:.6g} (last saved time): {sol.message}",
            first,
        )
    y = sol.y.T.reshape(t_eval.size, *shape)  # (n_t, group, *state_shape)
    bad = ~np.isfinite(y.reshape(t_eval.size, shape[0], -1)).all(axis=(0, 2))
    if bad.any():
        index = int(indices[np.argmax(bad)])
        raise ReferenceSolveError(f"trajectory {index}: {method} produced non-finite states", index)
    return np.ascontiguousarray(np.moveaxis(y, 1, 0)), sol.nfev, wall


class _RealView:
    """``f`` on complex ``y`` (n,) seen as a real field on ``(Re y, Im y)`` (2n,)."""

    def __init__(self, f, n: int):
        self.f, self.n = f, n

    def __call__(self, t, y):
        dy = self.f(t, y[: self.n] + 1j * y[self.n :])
        return np.concatenate([dy.real, dy.imag])


def _expm(system, x0: np.ndarray, t_eval: np.ndarray) -> tuple[np.ndarray, float]:
    """All trajectories at once: ``x(t) = exp((t - t0) A) x0`` with ``expm_multiply``."""
    from scipy.sparse.linalg import expm_multiply

    op = system.linear_operator(t_eval[0])
    if op is None or getattr(op, "time_dependent", False):
        raise ValueError(
            f"`method` 'expm' needs a time-independent linear_operator; "
            f"{system.name} has {'none' if op is None else 'a time-dependent one'}"
        )
    if callable(getattr(op, "sparse", None)):
        A = op.sparse()
    else:
        try:
            A = op.dense().detach().cpu().numpy()
        except NotImplementedError:
            raise ValueError(
                f"`method` 'expm' needs the operator as a matrix; "
                f"{type(op).__name__} has neither sparse() nor dense()"
            ) from None
    B = x0.reshape(x0.shape[0], -1).T  # (n, batch)
    start = time.perf_counter()
    dt = np.diff(t_eval)
    if np.allclose(dt, dt[0], rtol=1e-12, atol=0.0):
        Y = expm_multiply(
            A, B, start=0.0, stop=t_eval[-1] - t_eval[0], num=t_eval.size, endpoint=True
        )  # (n_t, n, batch)
    else:
        Y = np.stack([expm_multiply((t - t_eval[0]) * A, B) for t in t_eval])
    wall = time.perf_counter() - start
    Y = np.moveaxis(np.asarray(Y), 2, 0).astype(x0.dtype, copy=False)  # (batch, n_t, n)
    return Y.reshape(x0.shape[0], t_eval.size, *x0.shape[1:]), wall


@contextlib.contextmanager
def _one_thread():
    """Torch limited to one thread (deterministic across serial and parallel runs)."""
    previous = torch.get_num_threads()
    if previous != 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if previous != 1:
            torch.set_num_threads(previous)


def _process_pool(workers: int) -> ProcessPoolExecutor:
    # fork is cheap (no re-import of torch) and safe here: workers run torch single-threaded.
    # From Python 3.12 forking a multi-threaded process is deprecated, so use forkserver there.
    method = "fork" if sys.platform == "linux" and sys.version_info < (3, 12) else "forkserver"
    if method not in multiprocessing.get_all_start_methods():
        method = "spawn"
    context = multiprocessing.get_context(method)
    if method == "forkserver":
        context.set_forkserver_preload(["physres"])
    return ProcessPoolExecutor(
        workers, mp_context=context, initializer=torch.set_num_threads, initargs=(1,)
    )

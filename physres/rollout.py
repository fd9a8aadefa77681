"""Fixed-step rollout of any stepper, eager or in compiled chunks."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from . import _checks, _compile
from .errors import ConvergenceError, DivergenceError

COMPILE_MODES = ("auto", True, False)
ON_DIVERGENCE = ("raise", "return")
DRIVERS = ("loop", "chunks")


@dataclass
class Rollout:
    """What ``rollout(..., full_output=True)`` returns.

    trajectory : Tensor (batch, n_saved, *state_shape), the saved states (up to the last
        finite one when the run failed)
    final : Tensor (batch, *state_shape), the state after the last completed step
    steps : steps completed (``n_steps`` unless the run failed)
    wall_s : wall time of the stepping, observer calls excluded
    observer_s : wall time spent in the observer
    failure : the DivergenceError or ConvergenceError that stopped the run, or None
    compile : the compile report of the run (as ``physres._compile.last_run``)
    """

    trajectory: torch.Tensor
    final: torch.Tensor
    steps: int
    dt: float
    t0: float
    wall_s: float
    observer_s: float = 0.0
    failure: Exception | None = None
    compile: dict = field(default_factory=dict)

    @property
    def status(self) -> str:
        """``"ok"``, ``"diverged"`` (a non-finite state) or ``"solver failed"`` (an implicit
        solve did not converge)."""
        if self.failure is None:
            return "ok"
        return "diverged" if isinstance(self.failure, DivergenceError) else "solver failed"

    @property
    def failed_step(self) -> int | None:
        """The step (1-based) that failed, or None."""
        return None if self.failure is None else self.steps + 1

    @property
    def t_final(self) -> float:
        """Time of :attr:`final`."""
        return self.t0 + self.steps * self.dt


def rollout(
    stepper,
    x0: torch.Tensor,
    dt: float,
    n_steps: int,
    t0: float = 0.0,
    save_every: int = 1,
    progress: bool = False,
    compile="auto",
    chunk: int | None = None,
    *,
    observer: Callable | None = None,
    on_divergence: str = "raise",
    full_output: bool = False,
):
    """Apply ``stepper`` ``n_steps`` times from ``x0``.

    Parameters
    ----------
    stepper : Stepper (or any callable ``(x, t, dt) -> x_next``)
    x0 : Tensor, shape (batch, *state_shape)
    dt : float, > 0
    n_steps : int, >= 0
    t0 : float
    save_every : int
        Keep every ``save_every``-th state (the initial state is always kept).
    progress : bool
        Show a progress bar.
    compile : "auto", True, False or dict
        Run the loop compiled (see :mod:`physres._compile`). On CPU, when no gradient is
        needed, the whole loop is one compiled ``while_loop`` over chunks of ``chunk`` steps,
        run by inductor's C++ wrapper: the run returns to Python once. Otherwise (gradients,
        a GPU, ``{"driver": "chunks"}``, or when the whole loop does not compile) each chunk is
        one ``torch.compile`` graph (CUDA graphs on a GPU) called from Python. Finiteness is
        checked on every state inside the graphs, never synced per step. ``True`` compiles and
        warns
        (:class:`~physres._compile.CompileFallbackWarning`) when it must fall back to eager;
        ``"auto"`` compiles only when it pays: no gradient is needed, torch.compile is
        available, and the eager run would take at least ``_compile.AUTO_MIN_SECONDS`` (timed on
        the first steps) or the chunk is already compiled; otherwise, and silently on failure
        (on the CPU: when the whole loop cannot trace the step, no chunk compile is tried), it
        runs eagerly. A dict compiles with those ``torch.compile`` options (its ``"options"``
        merged over ``_compile.LOOP_OPTIONS`` for the whole loop), and ``"driver": "chunks"``
        asks for compiled chunks. Results equal the eager loop's to round-off;
        ``physres._compile.last_run`` reports the driver, compile and run time.
    chunk : int, optional
        Steps per compiled graph or loop body (default ``_compile.LOOP_CHUNK`` for the whole
        loop, ``_compile.DEFAULT_CHUNK`` for chunks), adjusted to ``save_every``.
    observer : callable ``(n, t, x)``, optional
        Called for every saved state, in order: the initial one (``n = 0``) and each state
        after step ``n`` at time ``t = t0 + n·dt`` that is kept. A compiled run calls it after
        each chunk (after the whole loop) for the states it kept. Its time is not counted in
        ``wall_s``.
    on_divergence : ``"raise"`` or ``"return"``
        ``"return"``: a non-finite state (DivergenceError) or a failed implicit solve
        (ConvergenceError) ends the run early instead of raising; the result holds the states
        saved before it (and, with ``full_output``, the failure).
    full_output : bool
        Return a :class:`Rollout` (trajectory, final state, steps done, wall time, failure)
        instead of the trajectory alone.

    Returns
    -------
    Tensor, shape (batch, n_steps // save_every + 1, *state_shape), or a :class:`Rollout`

    Raises
    ------
    DivergenceError
        When a state becomes non-finite; names the step and time, and carries the saved
        trajectory up to the last finite state as ``.trajectory``. A compiled chunk that produced
        a non-finite state (the compiled loop stops after it) is re-run eagerly from its start,
        so the error names the same first step as an eager run.
    """
    dt = _checks.positive("dt", dt)
    n_steps = _checks.positive_int("n_steps", n_steps, allow_zero=True)
    save_every = _checks.positive_int("save_every", save_every)
    options, driver = None, "loop"
    if isinstance(compile, dict):
        options, compile = dict(compile), True
        driver = options.pop("driver", "loop")
        if driver not in DRIVERS:
            raise ValueError(f"`compile['driver']` must be 'loop' or 'chunks', got {driver!r}")
    elif not any(compile is m or (isinstance(m, str) and compile == m) for m in COMPILE_MODES):
        raise ValueError(
            f"`compile` must be 'auto', True, False or a dict of torch.compile "
            f"options, got {compile!r}"
        )
    if chunk is not None:
        chunk = _checks.positive_int("chunk", chunk)
    if on_divergence not in ON_DIVERGENCE:
        raise ValueError(f"`on_divergence` must be 'raise' or 'return', got {on_divergence!r}")
    if observer is not None and not callable(observer):
        raise TypeError(f"`observer` must be a callable (n, t, x), got {type(observer).__name__}")
    step = _checks.step_function(stepper, x0, dt)
    run = _Run(stepper, step, x0, dt, n_steps, float(t0), save_every, progress, observer)
    start = time.perf_counter()
    failure = None
    try:
        run.observe(0, x0)
        if compile is False or n_steps < 2:
            run.eager(n_steps)
        else:
            run.chunked(chunk, options, forced=compile is True, driver=driver)
    except (DivergenceError, ConvergenceError) as err:
        if on_divergence == "raise":
            raise
        failure = err
    finally:
        run.bar.close()
        wall = time.perf_counter() - start - run.observer_s
        _compile.last_run.clear()
        _compile.last_run.update(run.report, wall_s=wall)
    trajectory = torch.stack(run.saved, dim=1)
    if not full_output:
        return trajectory
    return Rollout(
        trajectory=trajectory,
        final=run.x,
        steps=run.n,
        dt=dt,
        t0=float(t0),
        wall_s=wall,
        observer_s=run.observer_s,
        failure=failure,
        compile=dict(_compile.last_run),
    )


class _Run:
    """State of one rollout: the current step ``n``, the state and the saved states."""

    def __init__(self, stepper, step, x0, dt, n_steps, t0, save_every, progress, observer=None):
        self.stepper, self.step, self.x, self.dt = stepper, step, x0, dt
        self.n_steps, self.t0, self.save_every = n_steps, t0, save_every
        self.n, self.saved = 0, [x0]
        self.observer, self.observer_s = observer, 0.0
        label = getattr(stepper, "name", "") or type(stepper).__name__
        self.bar = _progress(n_steps, progress, label)
        self.report = {
            "compiled": False,
            "chunk": None,
            "compile_s": 0.0,
            "compiled_steps": 0,
            "eager_steps": 0,
            "fallback": None,
            "driver": None,
        }

    def time(self, n: int) -> float:
        """``t`` at the start of step ``n`` (1-based), exactly as the eager loop computes it."""
        return self.t0 + (n - 1) * self.dt

    def observe(self, n: int, x) -> None:
        """Hand a saved state to the observer (timed apart from the stepping)."""
        if self.observer is not None:
            start = time.perf_counter()
            self.observer(n, self.t0 + n * self.dt, x)
            self.observer_s += time.perf_counter() - start

    def eager(self, until: int) -> None:
        """Eager steps up to step ``until``, raising DivergenceError at the first non-finite
        state. ``self.x`` and ``self.n`` follow every completed step."""
        dt = self.dt
        for n in range(self.n + 1, until + 1):
            x = self.step(self.x, self.time(n), dt)
            if not bool(torch.isfinite(x).all()):
                raise DivergenceError(
                    f"rollout diverged: non-finite state at step {n} (t = {self.t0 + n * dt:.6g}) "
                    f"with dt = {dt:g}; reduce `dt` or use a more stable stepper",
                    step=n,
                    time=self.t0 + n * dt,
                    trajectory=torch.stack(self.saved, dim=1),
                )
            self.x, self.n = x, n
            self.report["eager_steps"] += 1
            if n % self.save_every == 0:
                self.saved.append(x)
                self.observe(n, x)
            self.bar.update()

    def chunked(self, k: int | None, options, forced: bool, driver: str = "loop") -> None:
        loop = driver == "loop" and self.x.device.type == "cpu" and not self._grad_needed()
        if loop:
            k = _loop_length(k or _compile.LOOP_CHUNK, self.save_every)
        else:
            k = _chunk_length(k or _compile.DEFAULT_CHUNK, self.save_every)
        self.report["chunk"] = k
        self.report["driver"] = "loop" if loop else "chunks"
        self.options = options
        if forced and not _compile.available():
            self._fallback(RuntimeError("torch.compile is not available here"), k, (), forced)
            self.eager(self.n_steps)
            return
        if loop and (
            forced
            or (
                _compile.loop_cached(self.stepper, self.x, k, self.save_every, self.dt, options)
                and self._auto_allowed()
            )
        ):  # no warm-up needed: the loop's trace runs a chunk eagerly (filling any caches)
            if self._looped(k, options):
                return
            loop = False
            self.report["driver"] = "chunks"
        # Warm-up: eager steps up to the first multiple of k (at least one: it fills any
        # per-dt caches of the stepper, so the graph sees them settled), timed for "auto".
        first = min(self.n_steps, k)
        start = time.perf_counter()
        self.eager(1)
        mid = time.perf_counter()
        self.eager(first)
        per_step = (time.perf_counter() - mid) / (first - 1) if first > 1 else mid - start
        allowed = None  # "auto": checked only once a compile could pay
        while self.n < self.n_steps:
            length = min(k, self.n_steps - self.n)
            if self.save_every > k:  # end chunks on save points
                length = min(length, self.save_every - self.n % self.save_every)
            if length < k and self.n + length == self.n_steps:
                self.eager(self.n_steps)  # the final short tail is not worth a graph
                break
            saves = tuple(i for i in range(1, length + 1) if (self.n + i) % self.save_every == 0)
            if not forced:
                pays = per_step * (self.n_steps - self.n) >= _compile.AUTO_MIN_SECONDS
                if allowed is None and (pays or _compile.has_entries()):
                    allowed = self._auto_allowed()
                if loop:
                    ready = bool(allowed) and _compile.loop_cached(
                        self.stepper, self.x, k, self.save_every, self.dt, options
                    )
                else:
                    ready = bool(allowed) and _compile.cached(
                        self.stepper, self.x, length, saves, self.dt, options
                    )
                if not (allowed and (pays or ready)):
                    self.eager(self.n_steps)
                    break
            if loop:
                if self._looped(k, options):
                    return
                if not forced:  # "auto": a step the whole loop cannot trace (data-dependent
                    self.eager(self.n_steps)  # control flow) rarely pays back chunk compiles
                    break
                loop = False  # the whole loop did not compile: compiled chunks instead
                self.report["driver"] = "chunks"
                continue
            entry = _compile.get_chunk(
                self.stepper, self.step, self.x, length, saves, self.dt, options
            )
            if entry is None or not self._compiled_chunk(entry, length, saves, forced):
                self.eager(self.n_steps)
                break

    def _grad_needed(self) -> bool:
        if not torch.is_grad_enabled():
            return False
        if self.x.requires_grad:
            return True
        params = self.stepper.parameters() if isinstance(self.stepper, torch.nn.Module) else ()
        return any(p.requires_grad for p in params)

    def _auto_allowed(self) -> bool:
        return _compile.available() and not self._grad_needed()

    def _looped(self, k: int, options) -> bool:
        """All remaining whole chunks of ``k`` steps in one compiled loop, then the tail eagerly;
        False (nothing done) when the loop cannot be compiled."""
        s = self.save_every
        entry = _compile.get_loop(self.stepper, self.step, self.x, k, s, self.dt, options)
        if entry is None:
            return False
        n0 = self.n
        n_end = n0 + (self.n_steps - n0) // k * k
        # row m // s holds the state after step m; the last row takes the unsaved chunk ends
        out = self.x.new_empty((self.n_steps // s + 2, *self.x.shape))
        was_compiled = entry.compiled
        try:
            n, x, ok = entry.run(n0, n_end, self.x, self.t0, out)
        except DivergenceError:
            raise
        except Exception as err:  # noqa: BLE001 - anything make_fx/dynamo/inductor raises
            _compile.mark_loop_failed(self.stepper, self.x, k, s, self.dt, options, err)
            self.report["loop_fallback"] = f"{type(err).__name__}: {err}".splitlines()[0]
            return False
        if not was_compiled:
            self.report["compile_s"] += entry.compile_s
        if not ok:  # the last chunk run holds a non-finite state; x is its start
            n -= k
        for row in range(n0 // s + 1, n // s + 1):
            self.saved.append(out[row])
            self.observe(row * s, out[row])
        self.x, self.n = x, n
        self.report["compiled"] = True
        self.report["compiled_steps"] += n - n0
        self.bar.update(n - n0)
        if not ok:  # re-run eagerly: names the first bad step
            self.eager(self.n + k)
        self.eager(self.n_steps)
        return True

    def _compiled_chunk(self, entry, length, saves, forced) -> bool:
        """Run one compiled chunk; False (after falling back) when compilation failed."""
        times = torch.tensor(
            [self.time(self.n + i) for i in range(1, length + 1)],
            dtype=torch.float64,
            device=self.x.device,
        )
        was_compiled = entry.compiled
        try:
            x, kept, ok = entry(self.x, times)
        except DivergenceError:
            raise
        except Exception as err:  # noqa: BLE001 - anything dynamo/inductor raises: go eager
            self._fallback(err, length, saves, forced)
            return False
        if not was_compiled:
            self.report["compile_s"] += entry.compile_s
        if not bool(ok):  # re-run eagerly from the chunk's start: names the first bad step
            self.eager(self.n + length)
            return True
        self.saved.extend(kept)
        for i, state in zip(saves, kept, strict=True):
            self.observe(self.n + i, state)
        self.x, self.n = x, self.n + length
        self.report["compiled"] = True
        self.report["compiled_steps"] += length
        self.bar.update(length)
        return True

    def _fallback(self, err, length, saves, forced) -> None:
        _compile.mark_failed(
            self.stepper, self.x, length, saves, self.dt, self.options, err, warn=forced
        )
        self.report["fallback"] = f"{type(err).__name__}: {err}".splitlines()[0]


def _chunk_length(k: int, save_every: int) -> int:
    """``k`` adjusted to ``save_every``: a multiple of it when it is smaller, else a divisor of
    it in [k/2, k] when one exists (so every chunk ends on or before a save point alike)."""
    if save_every <= k:
        return save_every * max(1, round(k / save_every))
    for d in range(k, max(k // 2, 1) - 1, -1):
        if save_every % d == 0:
            return d
    return k


def _loop_length(k: int, save_every: int) -> int:
    """Steps per body of the whole-loop driver: a multiple of ``save_every`` near ``k`` when it
    is at most ``k``, else the largest divisor of ``save_every`` not above ``k`` (so every save
    point ends a chunk)."""
    if save_every <= k:
        return save_every * max(1, round(k / save_every))
    return max(d for d in range(1, k + 1) if save_every % d == 0)


class _NoBar:
    """The progress bar of a run without one (a disabled ``tqdm`` costs a lock per run)."""

    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, enabled: bool, label: str):
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not enabled, desc=f"rollout {label}", unit="step", leave=False)

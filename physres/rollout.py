"""Fixed-step rollout of any stepper, eager or in compiled chunks."""

from __future__ import annotations

import time

import torch

from . import _checks, _compile
from .errors import DivergenceError

COMPILE_MODES = ("auto", True, False)


def rollout(stepper, x0: torch.Tensor, dt: float, n_steps: int, t0: float = 0.0,
            save_every: int = 1, progress: bool = False, compile="auto",
            chunk: int | None = None) -> torch.Tensor:
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
        Run the loop in chunks of ``chunk`` steps, each unrolled into one ``torch.compile``
        graph (CUDA graphs on a GPU) with finiteness checked once per chunk
        (see :mod:`physres._compile`). ``True`` compiles and warns
        (:class:`~physres._compile.CompileFallbackWarning`) when it must fall back to eager;
        ``"auto"`` compiles only when it pays: no gradient is needed, torch.compile is
        available, and the eager run would take at least ``_compile.AUTO_MIN_SECONDS`` (timed on
        the first steps) or the chunk is already compiled; otherwise, and silently on failure, it
        runs eagerly. A dict compiles with those ``torch.compile`` options. Results equal the
        eager loop's to round-off; ``physres._compile.last_run`` reports compile and run time.
    chunk : int, optional
        Steps per compiled graph (default ``_compile.DEFAULT_CHUNK``, adjusted to
        ``save_every``).

    Returns
    -------
    Tensor, shape (batch, n_steps // save_every + 1, *state_shape)

    Raises
    ------
    DivergenceError
        When a state becomes non-finite; names the step and time, and carries the saved
        trajectory up to the last finite state as ``.trajectory``. A compiled chunk that produced
        a non-finite state is re-run eagerly from its start, so the error names the same first
        step as an eager run.
    """
    dt = _checks.positive("dt", dt)
    n_steps = _checks.positive_int("n_steps", n_steps, allow_zero=True)
    save_every = _checks.positive_int("save_every", save_every)
    options = None
    if isinstance(compile, dict):
        options, compile = dict(compile), True
    elif not any(compile is m or (isinstance(m, str) and compile == m) for m in COMPILE_MODES):
        raise ValueError(f"`compile` must be 'auto', True, False or a dict of torch.compile "
                         f"options, got {compile!r}")
    if chunk is not None:
        chunk = _checks.positive_int("chunk", chunk)
    step = _checks.step_function(stepper, x0, dt)
    run = _Run(stepper, step, x0, dt, n_steps, float(t0), save_every, progress)
    start = time.perf_counter()
    try:
        if compile is False or n_steps < 2:
            run.eager(n_steps)
        else:
            run.chunked(chunk or _compile.DEFAULT_CHUNK, options, forced=compile is True)
    finally:
        run.bar.close()
        _compile.last_run.clear()
        _compile.last_run.update(run.report, wall_s=time.perf_counter() - start)
    return torch.stack(run.saved, dim=1)


class _Run:
    """State of one rollout: the current step ``n``, the state and the saved states."""

    def __init__(self, stepper, step, x0, dt, n_steps, t0, save_every, progress):
        self.stepper, self.step, self.x, self.dt = stepper, step, x0, dt
        self.n_steps, self.t0, self.save_every = n_steps, t0, save_every
        self.n, self.saved = 0, [x0]
        label = getattr(stepper, "name", "") or type(stepper).__name__
        self.bar = _progress(n_steps, progress, label)
        self.report = {"compiled": False, "chunk": None, "compile_s": 0.0, "compiled_steps": 0,
                       "eager_steps": 0, "fallback": None}

    def time(self, n: int) -> float:
        """``t`` at the start of step ``n`` (1-based), exactly as the eager loop computes it."""
        return self.t0 + (n - 1) * self.dt

    def eager(self, until: int) -> None:
        """Eager steps up to step ``until``, raising DivergenceError at the first non-finite
        state."""
        x, dt = self.x, self.dt
        for n in range(self.n + 1, until + 1):
            x = self.step(x, self.time(n), dt)
            if not bool(torch.isfinite(x).all()):
                raise DivergenceError(
                    f"rollout diverged: non-finite state at step {n} (t = {self.t0 + n * dt:.6g}) "
                    f"with dt = {dt:g}; reduce `dt` or use a more stable stepper",
                    step=n, time=self.t0 + n * dt, trajectory=torch.stack(self.saved, dim=1),
                )
            if n % self.save_every == 0:
                self.saved.append(x)
            self.bar.update()
        self.report["eager_steps"] += max(until - self.n, 0)
        self.x, self.n = x, max(self.n, until)

    def chunked(self, k: int, options, forced: bool) -> None:
        k = _chunk_length(k, self.save_every)
        self.report["chunk"] = k
        self.options = options
        if forced and not _compile.available():
            self._fallback(RuntimeError("torch.compile is not available here"), k, (), forced)
            self.eager(self.n_steps)
            return
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
            saves = tuple(i for i in range(1, length + 1)
                          if (self.n + i) % self.save_every == 0)
            if not forced:
                pays = per_step * (self.n_steps - self.n) >= _compile.AUTO_MIN_SECONDS
                if allowed is None and (pays or _compile.has_entries()):
                    allowed = self._auto_allowed()
                ready = bool(allowed) and _compile.cached(self.stepper, self.x, length, saves,
                                                          self.dt, options)
                if not (allowed and (pays or ready)):
                    self.eager(self.n_steps)
                    break
            entry = _compile.get_chunk(self.stepper, self.step, self.x, length, saves,
                                       self.dt, options)
            if entry is None or not self._compiled_chunk(entry, length, saves, forced):
                self.eager(self.n_steps)
                break

    def _auto_allowed(self) -> bool:
        if not _compile.available():
            return False
        if torch.is_grad_enabled():
            if self.x.requires_grad:
                return False
            params = self.stepper.parameters() if isinstance(self.stepper, torch.nn.Module) \
                else ()
            if any(p.requires_grad for p in params):
                return False
        return True

    def _compiled_chunk(self, entry, length, saves, forced) -> bool:
        """Run one compiled chunk; False (after falling back) when compilation failed."""
        times = torch.tensor([self.time(self.n + i) for i in range(1, length + 1)],
                             dtype=torch.float64, device=self.x.device)
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
        self.x, self.n = x, self.n + length
        self.report["compiled"] = True
        self.report["compiled_steps"] += length
        self.bar.update(length)
        return True

    def _fallback(self, err, length, saves, forced) -> None:
        _compile.mark_failed(self.stepper, self.x, length, saves, self.dt, self.options, err,
                             warn=forced)
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


def _progress(total: int, enabled: bool, label: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not enabled, desc=f"rollout {label}", unit="step",
                leave=False)

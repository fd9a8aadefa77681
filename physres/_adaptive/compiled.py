"""The per-sample loop compiled whole: one ``torch.compile`` graph runs every attempted step.

:mod:`.per_sample` issues some sixty small torch operations per attempted step from Python and
syncs with the host to gather the samples still running. Here the same attempted step is
written as masked tensor operations with no Python control flow on tensor values: every sample
is stepped each iteration, and a finished or failed sample's state is frozen by masks instead of
leaving the batch. The loop itself is ``torch._higher_order_ops.while_loop``, so inductor
compiles stages, error norm, per-sample accept/reject and step-size update, and the loop around
them, into one program with no return to Python until every sample has finished.

For explicit embedded pairs (``dopri5``, ``tsit5``, ``bosh3``, ...) the arithmetic per sample
is that of :mod:`.per_sample`: the same accepted and rejected steps, the same ``nfev``, states
equal to round-off (inductor may contract and reorder floating-point operations).

ESDIRK pairs (``kvaerno5``, ``kvaerno3``) run a different algorithm from the eager loop, so their
steps do not match it step for step: the eager simplified Newton tests convergence on the host,
refreshes the Jacobian and falls back to a damped full Newton, which a ``while_loop`` cannot
trace. Here (:meth:`~physres.steppers.esdirk.ESDIRK._masked_step_with_error`) each sample takes
its Jacobian at the step's start, factors ``I − γh·J`` once for the step (an explicit
Gauss–Jordan inverse up to 16 unknowns, LU factors above), and solves every stage by a masked
simplified Newton of at most ``max_iter`` iterations (a nested ``while_loop`` that stops once
every sample has converged or failed; :func:`~physres.steppers.newton.masked_newton`). As in
diffrax (``VeryChord``, ``y_error = inf`` on failure), a sample whose stages do not converge
rejects its step and shrinks ``h`` (``min_factor``); one that keeps failing down to the step
floor ends with ``Status.NEWTON_FAILURE``. Step doubling and states that need Newton–Krylov
or complex arithmetic run eagerly. Without an analytic ``jacobian`` the Jacobian is taken by
forward-mode autodiff inside the loop. (A field that takes a view of a tensor it closes over,
``x @ A.T``, does not trace inside ``while_loop`` in torch 2.13, which rejects aliased inputs;
such a solve falls back to the eager loop with the warning. ``AT = A.T.contiguous()`` outside
the field avoids it.)

A ``while_loop`` body may not mutate Python state, so during a compiled call the stepper's
``f`` (which counts evaluations) is shadowed by its field, and evaluations are counted here:
``stages × attempted steps`` for explicit pairs, as the eager loop counts them; for ESDIRK
pairs the loop carries the count (one per attempt plus the Newton iterations of each sample,
and the batched evaluations actually run), and one Jacobian per attempt. Compiled loops are
cached per signature (stepper, state shape, dtype, device, number of outputs, tolerances,
controller, ``max_steps``, ``throw``, Newton options, inductor options); output times,
initial states and step sizes are inputs, so new values of those never recompile.
"""

from __future__ import annotations

import collections
import functools
import math
import time
import types
import warnings

import torch

from .. import _compile
from ..errors import CompileFallbackWarning, Status
from .control import RUNNING, error_ratio, failure

AUTO_MIN_SECONDS = 30.0  # compile="auto": once eager solves of a signature took this long
MAX_ENTRIES = 16  # compiled loops kept (least recently used dropped)
_DEFAULT_OPTIONS = {"cpp_wrapper": True}  # CPU: the loop runs in C++, not in a Python wrapper

stats = {"compiles": 0, "compile_s": 0.0, "fallbacks": 0, "compiled_runs": 0}

_CACHE: collections.OrderedDict = collections.OrderedDict()
_EAGER_S: dict = {}  # signature -> seconds spent by eager solves ("auto")
_FAILED = object()


def clear_cache() -> None:
    """Drop every compiled loop and the eager-time tally of ``compile="auto"``."""
    _CACHE.clear()
    _EAGER_S.clear()


def _rows(mask, like):
    return mask.reshape(-1, *[1] * (like.dim() - 1))


def make_iteration(trial, ctrl, direction, rtol, atol, max_steps, implicit=None):
    """``iteration(t_out, *state) -> state``: one attempted step of every running sample
    (the state as :func:`_initial` builds it). ``implicit``: the stepper's masked step
    ``(x, t, dt, live) -> (x_new, err, ok, evaluations, batched)`` for implicit stages (a
    sample whose stages did not converge rejects its step, as a non-finite trial does)."""
    toward = direction * math.inf
    fsal = trial.fsal

    def iteration(
        t_out, x, f, t, h, prev, after_reject, status, last_failure, n_acc, n_try, next_out,
        states, fail_t, fail_h, nfev_s, nfev_b,
    ):  # fmt: skip
        n_out = t_out.shape[0]
        running = status == RUNNING
        target = t_out[next_out.clamp(max=n_out - 1)]
        remaining = (target - t).abs()
        landing = h >= remaining
        h_try = torch.where(landing, remaining, h)
        # the step floor, relative to the current t (scipy's): 10·|nextafter(t, ±inf) − t|
        spacing = (torch.nextafter(t, torch.full_like(t, toward)) - t).abs() * 10
        max_hit = n_try >= max_steps
        bad = running & (max_hit | ((h_try < spacing) & ~landing))
        code = torch.where(max_hit, int(Status.MAX_STEPS), last_failure)
        status = torch.where(bad, code, status)
        fail_t = torch.where(bad, t, fail_t)
        fail_h = torch.where(bad, h_try, fail_h)
        active = running & ~bad
        if implicit is None:
            x_new, err, f_new = trial(x, t, direction * h_try, f if fsal else None)
        else:
            x_new, err, ok, evals, batched = implicit(x, t, direction * h_try, active)
            nfev_s = nfev_s + torch.where(active, evals, 0)
            nfev_b = nfev_b + batched
        ratio = error_ratio(err, x, x_new, rtol, atol).nan_to_num(nan=math.inf, posinf=math.inf)
        kind = torch.where(ratio < math.inf, int(Status.STEP_FLOOR), int(Status.NON_FINITE))
        if implicit is not None:
            ratio = torch.where(ok, ratio, math.inf)
            kind = torch.where(ok, kind, int(Status.NEWTON_FAILURE))
        accept = ratio <= 1.0
        h_new = h_try * ctrl.factors(ratio, prev, accept, after_reject)
        t_new = torch.where(accept, torch.where(landing, target, t + direction * h_try), t)
        take = active & accept
        x = torch.where(_rows(take, x), x_new, x)
        if fsal:
            f = torch.where(_rows(take, f), f_new, f)
        t = torch.where(active, t_new, t)
        h = torch.where(active, h_new, h)
        if ctrl.kp:
            prev = torch.where(take, ratio.clamp(min=1e-4), prev)
        after_reject = torch.where(active, ~accept, after_reject)
        last_failure = torch.where(active, kind, last_failure)
        n_acc = n_acc + take.long()
        n_try = n_try + active.long()
        landed = take & landing
        ones = [1] * (x.dim() - 1)
        slot = torch.arange(n_out, device=x.device).reshape(1, n_out, *ones)
        hit = landed.reshape(-1, 1, *ones) & (slot == next_out.reshape(-1, 1, *ones))
        states = torch.where(hit, x.unsqueeze(1), states)
        next_out = next_out + landed.long()
        status = torch.where((next_out >= n_out) & (status == RUNNING), int(Status.SUCCESS), status)
        return (
            x, f, t, h, prev, after_reject, status, last_failure, n_acc, n_try, next_out,
            states, fail_t, fail_h, nfev_s, nfev_b,
        )  # fmt: skip

    return iteration


def _initial(x0, f0, t0, h0, outputs):
    """The loop state at ``t0`` (the argument order of ``iteration`` after ``t_out``)."""
    B, dev = x0.shape[0], x0.device
    f64 = dict(dtype=torch.float64, device=dev)

    def ints(v):
        return torch.full((B,), v, dtype=torch.long, device=dev)

    states = torch.full((B, len(outputs), *x0.shape[1:]), math.nan, dtype=x0.dtype, device=dev)
    start = int(outputs[0] == t0)
    if start:
        states[:, 0] = x0
    return (
        x0,
        x0.clone() if f0 is None else f0,  # f: a placeholder of x's shape without FSAL
        torch.full((B,), t0, **f64),
        h0.to(**f64),
        torch.ones(B, **f64),
        torch.zeros(B, dtype=torch.bool, device=dev),
        ints(RUNNING if start < len(outputs) else int(Status.SUCCESS)),
        ints(int(Status.STEP_FLOOR)),
        ints(0),
        ints(0),
        ints(start),
        states,
        torch.zeros(B, **f64),
        torch.zeros(B, **f64),
        ints(0),  # field evaluations per sample (implicit stages)
        torch.zeros((), dtype=torch.long, device=dev),  # batched evaluations (implicit)
    )


def unsupported(stepper, trial, x0) -> str | None:
    """Why this per-sample solve cannot run compiled (None when it can)."""
    if not _compile.available():
        return "torch.compile is not available here"
    if not trial.embedded:
        return "only embedded pairs run compiled (not step doubling)"
    if not getattr(stepper, "explicit", False):
        if not hasattr(stepper, "_masked_step_with_error"):
            return (
                f"{type(stepper).__name__}'s implicit stages have no masked Newton (only ESDIRK "
                "pairs such as 'kvaerno5' run compiled)"
            )
        why = stepper.masked_unsupported(x0)
        if why is not None:
            return why
    elif not hasattr(stepper, "tableau"):
        return f"{type(stepper).__name__} has no Butcher tableau"
    if getattr(type(stepper).f, "__qualname__", "") != "Stepper.f" or stepper.field is None:
        return f"{type(stepper).__name__} evaluates its field in its own way"
    if torch.is_grad_enabled():
        params = stepper.parameters() if isinstance(stepper, torch.nn.Module) else ()
        if x0.requires_grad or any(p.requires_grad for p in params):
            return "gradients are needed (a compiled loop is never differentiated)"
    return None


def signature(stepper, x0, n_out, ctrl, direction, rtol, atol, max_steps, throw, options):
    return (
        id(stepper),
        type(stepper),
        tuple(x0.shape),
        x0.dtype,
        x0.device,
        n_out,
        ctrl,
        direction,
        float(rtol),
        float(atol),
        int(max_steps),
        bool(throw),
        repr(getattr(stepper, "newton", None)),  # implicit stages: Newton tolerances, cap
        repr(sorted((options or {}).items())),
    )


def note_eager(key, seconds: float) -> None:
    """Tally an eager solve's time for ``compile="auto"``."""
    _EAGER_S[key] = _EAGER_S.get(key, 0.0) + seconds


def wanted(key, forced: bool) -> bool:
    """Whether to run compiled: always when forced (``compile=True``), else ("auto") when the
    loop is compiled already or eager solves of this signature took ``AUTO_MIN_SECONDS``."""
    entry = _CACHE.get(key)
    if entry is _FAILED:
        return False
    if forced or entry is not None:
        return True
    return _EAGER_S.get(key, 0.0) >= AUTO_MIN_SECONDS


class _Loop:
    """One compiled solve: ``(t_out, *state) -> final state``."""

    def __init__(self, stepper, iteration, stop_on_failure, device, options):
        self.owner = stepper

        def body(t_out, *state):
            out = iteration(t_out, *state)
            # while_loop forbids an output aliasing an input (t_out, or an unused `prev`)
            out = tuple(b.clone() if b is a else b for a, b in zip(state, out, strict=True))
            return (t_out.clone(), *out)

        def cond(t_out, *state):
            status = state[6]
            go = (status == RUNNING).any()
            if stop_on_failure:  # throw=True: stop at the first failure, as the eager loop
                go = go & ~((status != RUNNING) & (status != int(Status.SUCCESS))).any()
            return go

        def solve(t_out, *state):
            from torch._higher_order_ops import while_loop

            return while_loop(cond, body, (t_out, *state))[1:]

        label = f"physres_adaptive_{id(self)}"
        code = solve.__code__.replace(co_name=label)  # its own dynamo cache
        fn = types.FunctionType(code, solve.__globals__, label, None, solve.__closure__)
        opts = dict(_DEFAULT_OPTIONS) if device.type == "cpu" else {}
        opts.update(options or {})
        self.fn = torch.compile(fn, fullgraph=True, dynamic=False, options=opts or None)
        self.compiled = False
        self.compile_s = 0.0

    def __call__(self, t_out, state):
        stepper = self.owner
        stepper.__dict__["f"] = stepper.field  # uncounted evaluations (counted by the caller)
        try:
            if not self.compiled:
                start = time.perf_counter()
                with warnings.catch_warnings():  # torch's own deprecations while compiling
                    warnings.simplefilter("ignore", DeprecationWarning)
                    out = self.fn(t_out, *state)
                self.compile_s = time.perf_counter() - start
                self.compiled = True
                stats["compiles"] += 1
                stats["compile_s"] += self.compile_s
            else:
                with torch.compiler.set_stance("fail_on_recompile"):
                    out = self.fn(t_out, *state)
        finally:
            del stepper.__dict__["f"]
        stats["compiled_runs"] += 1
        return out


def run(
    trial,
    ctrl,
    x0,
    f0,
    t0: float,
    t1: float,
    direction: float,
    outputs: list,
    h0: torch.Tensor,
    *,
    key,
    rtol,
    atol,
    max_steps,
    throw,
    stepper,
    options,
    forced: bool,
    report: dict,
):
    """As :func:`.per_sample.run`, compiled; None when compilation failed (the caller then
    runs the eager loop). ``report`` receives ``compiled`` and ``compile_s``."""
    entry = _CACHE.get(key)
    if entry is not None and entry is not _FAILED and entry.owner is not stepper:
        entry = None  # an id reused by a new object
    implicit = None
    if not getattr(stepper, "explicit", False):
        implicit = functools.partial(stepper._masked_step_with_error, **stepper.masked_options(x0))
    if entry is None:
        iteration = make_iteration(trial, ctrl, direction, rtol, atol, max_steps, implicit)
        entry = _Loop(stepper, iteration, throw, x0.device, options)
        _CACHE[key] = entry
        while len(_CACHE) > MAX_ENTRIES:
            _CACHE.popitem(last=False)
    _CACHE.move_to_end(key)
    t_out = torch.tensor(outputs, dtype=torch.float64, device=x0.device)
    state = _initial(x0, f0, t0, h0, outputs)
    was_compiled = entry.compiled
    try:
        with torch.no_grad():
            out = entry(t_out, state)
    except Exception as err:  # noqa: BLE001 - anything dynamo/inductor raises: go eager
        _CACHE[key] = _FAILED
        stats["fallbacks"] += 1
        name = getattr(stepper, "name", "") or type(stepper).__name__
        first = (str(err).splitlines() or [""])[0][:200]
        report["fallback"] = f"{type(err).__name__}: {first}"
        if forced:
            warnings.warn(
                f"compiled integrate of `{name}` fell back to the eager loop: "
                f"{type(err).__name__}: {first}",
                CompileFallbackWarning,
                stacklevel=4,
            )
        return None
    report["compiled"] = True
    report["compile_s"] = 0.0 if was_compiled else entry.compile_s
    _, _, t, _, _, _, status, _, n_acc, n_try, _, states, fail_t, fail_h, nfev_s, nfev_b = out
    if implicit is None:
        spent = stepper.tableau.stages - (1 if trial.fsal and f0 is not None else 0)
        stepper.counts["nfev"] += spent * int(n_try.max())
        nfev_s = spent * n_try
    else:
        stepper.counts["nfev"] += int(nfev_b)
        stepper.counts["njev"] += int(n_try.max())
    failed = (status != RUNNING) & (status != int(Status.SUCCESS))
    if throw and bool(failed.any()):
        i = int(failed.nonzero()[0])
        raise failure(
            int(status[i]),
            t=float(fail_t[i]),
            h=float(fail_h[i]),
            t1=t1,
            stepper=stepper,
            max_steps=max_steps,
            sample=i,
        )
    return states, status, n_acc, n_try - n_acc, nfev_s

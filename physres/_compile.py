"""Compiled fixed-step chunks: ``k`` steps of a stepper unrolled into one ``torch.compile`` graph.

A Python loop of steps pays the interpreter and the ATen dispatcher for every operation of every
step; unrolling a chunk of steps into one graph lets inductor fuse them (on CPU a chunk of RK4
steps on a small state becomes one C++ kernel). Each chunk also returns ``isfinite`` of every
state it produced as one boolean tensor, so a driver checks finiteness once per chunk instead of
syncing with the host after every step.

Compiled chunks are cached per (stepper, state shape, dtype, device, chunk length, saved
positions, dt, grad mode); every cache entry owns its own code object, so its dynamo cache holds
exactly one graph and a second call with the same signature never recompiles (calls after the
first run under ``torch.compiler.set_stance("fail_on_recompile")``: a signature that would need a
recompile falls back to eager instead). Anything that fails to compile — a Newton solve, Python
control flow on tensor values — falls back to eager.

Field-evaluation counters (``stepper.counts``) are swapped for scratch dicts around each
compiled call and added back afterwards, so ``nfev`` stays exact and its changing value is no
guard on the graph.

Whole-loop driver (:func:`get_loop`): all chunks of a run inside one compiled
``torch._higher_order_ops.while_loop``, so the run returns to Python once instead of once per
chunk. The loop body is a chunk of steps traced once with ``make_fx`` (Python side effects of a
step, e.g. its field-evaluation counters, run once at trace time; the per-chunk counts are then
added per chunk run). Saved states are written by the loop into one preallocated buffer; the
loop stops after the first chunk with a non-finite state and hands back that chunk's start (the
loop state keeps it: no copy per chunk), so the driver re-runs just that chunk eagerly and names
the same first bad step as an eager run. Once compiled, the loop is called straight through
inductor's compiled graph, without dynamo's guards (the cache key holds what they check).
Inductor compiles it with its C++ wrapper (``cpp_wrapper``: the loop itself runs in C++) and
stacks as pointwise expressions (``force_pointwise_cat``: no buffer per stage), in scalar C++ for
states of at most ``SCALAR_NUMEL`` elements. Used only when no gradient is needed.

``stats`` (process totals) and ``last_run`` (the latest :func:`physres.rollout`) report compile
time separately from run time.
"""

from __future__ import annotations

import collections
import logging
import time
import types
import warnings

import torch

from .errors import CompileFallbackWarning  # re-exported: issued here

__all__ = [
    "CompileFallbackWarning",
    "available",
    "clear_cache",
    "compiled_step",
    "get_loop",
    "last_run",
    "stats",
]

log = logging.getLogger(__name__)

DEFAULT_CHUNK = 32  # steps per compiled graph (compile time grows with it; see docs/benchmarks.md)
AUTO_MIN_SECONDS = 60.0  # compile="auto" compiles when the eager run would take at least this
# raised from inside dynamo while it traces a field (not by user code); harmless
_DYNAMO_GRAD_WARNING = "The .grad attribute of a Tensor that is not a leaf"
LOOP_CHUNK = 10  # steps per body of the whole-loop driver (see docs/benchmarks.md)
LOOP_OPTIONS = {"cpp_wrapper": True, "force_pointwise_cat": True}  # inductor, whole loop
# states of at most this many elements get scalar C++ (no SIMD): a few lanes of masked vector
# code cost more than they save, and scalar code compiles about twice as fast
SCALAR_NUMEL = 64
MAX_ENTRIES = 64  # compiled chunks kept (least recently used dropped)

stats = {"compiles": 0, "compile_s": 0.0, "fallbacks": 0, "compiled_chunks": 0}
last_run: dict = {}

_CACHE: collections.OrderedDict = collections.OrderedDict()
_FAILED = object()


def available() -> bool:
    """Whether ``torch.compile`` can run here (dynamo supported on this Python and platform)."""
    try:
        import torch._dynamo

        return bool(torch._dynamo.is_dynamo_supported())
    except Exception:  # noqa: BLE001 - any import/platform problem means "not available"
        return False


def clear_cache() -> None:
    """Drop every cached compiled chunk (and its references to steppers)."""
    _CACHE.clear()


def _options(device: torch.device, options: dict | None) -> dict:
    opts = {"fullgraph": True, "dynamic": False}
    if device.type == "cuda":  # CUDA graphs: one launch per chunk
        opts["mode"] = "reduce-overhead"
    opts.update(options or {})
    return opts


def _count_dicts(stepper) -> list:
    """Objects whose ``counts`` dict (nfev/njev) is mutated by a step."""
    mods = stepper.modules() if isinstance(stepper, torch.nn.Module) else [stepper]
    return [m for m in mods if isinstance(getattr(m, "__dict__", {}).get("counts"), dict)]


class _Swap:
    """Replace each owner's ``counts`` by a zeroed scratch dict; add the scratch back on exit."""

    def __init__(self, owners):
        self.owners = owners
        self.scratch = [dict.fromkeys(o.counts, 0) for o in owners]

    def __enter__(self):
        self.real = []
        for o, s in zip(self.owners, self.scratch, strict=True):
            for key in s:
                s[key] = 0
            self.real.append(o.counts)
            o.counts = s
        return self

    def __exit__(self, *exc):
        for o, s, real in zip(self.owners, self.scratch, self.real, strict=True):
            o.counts = real
            for key, v in s.items():
                real[key] = real.get(key, 0) + v
        return False


def _fresh_code(fn, label: str):
    """``fn`` with its own code object, so dynamo keeps a separate cache for it."""
    code = fn.__code__.replace(co_name=label)
    return types.FunctionType(code, fn.__globals__, label, fn.__defaults__, fn.__closure__)


def _chunk_function(step, length: int, saves: tuple[int, ...], dt: float):
    save_set = frozenset(saves)

    def chunk(x, times):
        kept, ok = [], None
        for i in range(length):
            x = step(x, times[i], dt)
            finite = torch.isfinite(x).all()
            ok = finite if ok is None else ok & finite
            if i + 1 in save_set:
                kept.append(x)
        return x, kept, ok

    return chunk


class _Chunk:
    """One compiled chunk: ``(x, times) -> (x_last, [saved states], all_finite)``."""

    def __init__(self, stepper, step, length, saves, dt, device, options):
        self.owner = stepper
        self.length, self.saves = length, saves
        self.swap = _Swap(_count_dicts(stepper))
        fn = _fresh_code(_chunk_function(step, length, saves, dt), f"physres_chunk_{id(self)}")
        self.fn = torch.compile(fn, **_options(device, options))
        self.cuda = device.type == "cuda"
        self.compiled = False
        self.compile_s = 0.0

    def __call__(self, x, times):
        with self.swap:
            if not self.compiled:
                start = time.perf_counter()
                with warnings.catch_warnings():  # torch's own deprecations while compiling
                    warnings.simplefilter("ignore", DeprecationWarning)
                    warnings.filterwarnings("ignore", _DYNAMO_GRAD_WARNING)
                    out = self.fn(x, times)
                self.compile_s = time.perf_counter() - start
                self.compiled = True
                stats["compiles"] += 1
                stats["compile_s"] += self.compile_s
            else:
                with torch.compiler.set_stance("fail_on_recompile"):
                    out = self.fn(x, times)
        stats["compiled_chunks"] += 1
        if self.cuda:  # CUDA-graph outputs are overwritten by the next replay
            x, kept, ok = out
            out = (x.clone(), [k.clone() for k in kept], ok.clone())
        return out


def _key(stepper, x, length, saves, dt, options):
    return (
        id(stepper),
        type(stepper),
        tuple(x.shape),
        x.dtype,
        x.device,
        length,
        saves,
        float(dt),
        torch.is_grad_enabled(),
        x.requires_grad,
        repr(sorted((options or {}).items())),
    )


def has_entries() -> bool:
    """Whether any chunk has been compiled in this process (cheap; imports nothing)."""
    return bool(_CACHE)


def get_chunk(stepper, step, x, length, saves, dt, options):
    """The cached compiled chunk for this signature, compiling it on first use; None when this
    signature failed before (eager fallback)."""
    return _entry(
        _key(stepper, x, length, saves, dt, options),
        stepper,
        lambda: _Chunk(stepper, step, length, saves, dt, x.device, options),
    )


def _entry(key, stepper, build):
    """The cache entry under ``key`` (built by ``build()`` when missing or owned by another
    object that reused the stepper's id), most recently used; None for a failed signature."""
    entry = _CACHE.get(key)
    if entry is not None and entry is not _FAILED and entry.owner is not stepper:
        entry = None  # an id reused by a new object
    if entry is None:
        entry = build()
        _CACHE[key] = entry
        while len(_CACHE) > MAX_ENTRIES:
            _CACHE.popitem(last=False)
    _CACHE.move_to_end(key)
    return None if entry is _FAILED else entry


def cached(stepper, x, length, saves, dt, options) -> bool:
    """Whether a compiled chunk for this signature is ready (no compile cost left)."""
    entry = _CACHE.get(_key(stepper, x, length, saves, dt, options))
    return entry is not None and entry is not _FAILED and entry.compiled


def mark_failed(stepper, x, length, saves, dt, options, err: BaseException, *, warn: bool) -> None:
    _CACHE[_key(stepper, x, length, saves, dt, options)] = _FAILED
    stats["fallbacks"] += 1
    name = getattr(stepper, "name", "") or type(stepper).__name__
    msg = (
        f"compiled rollout of `{name}` fell back to eager steps: "
        f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    )
    if warn:
        warnings.warn(msg, CompileFallbackWarning, stacklevel=4)
    else:
        log.debug(msg)


def compiled_step(step_fn, *, options: dict | None = None):
    """A compiled ``(x, t, dt) -> x_next`` for loops written outside :func:`physres.rollout`
    (e.g. an unrolled training loss).

    ``step_fn`` is a Stepper (its unchecked ``step`` is compiled) or any callable
    ``(x, t, dt) -> x_next``. ``t`` is passed into the graph as a 0-d float64 tensor, so a new
    time is no recompile; a new ``dt`` or state shape is (``dt`` is a graph constant). Graph
    breaks are allowed (``fullgraph=False``) unless ``options`` says otherwise; autograd works
    through the compiled step. Field-evaluation counters stay exact.

    >>> step = compiled_step(physres.steppers.get("rk4", lambda t, x: -x))
    >>> y = step(torch.ones(4, 2), 0.0, 0.1)
    """
    owner = step_fn
    fn = step_fn.step if hasattr(step_fn, "check_call") else step_fn
    if not callable(fn):
        raise TypeError(f"`step_fn` must be callable as (x, t, dt), got {type(step_fn).__name__}")

    def one_step(x, t, dt):
        return fn(x, t, dt)

    opts = {"fullgraph": False, "dynamic": False, **(options or {})}
    with warnings.catch_warnings():  # torch's own deprecations while importing inductor
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", _DYNAMO_GRAD_WARNING)
        compiled = torch.compile(_fresh_code(one_step, f"physres_step_{id(owner)}"), **opts)
    swap = _Swap(_count_dicts(owner))

    def call(x, t, dt):
        if not isinstance(t, torch.Tensor):
            t = torch.tensor(float(t), dtype=torch.float64, device=x.device)
        with swap, warnings.catch_warnings():  # torch's own deprecations while compiling
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.filterwarnings("ignore", _DYNAMO_GRAD_WARNING)
            return compiled(x, t, float(dt))

    call.__doc__ = f"Compiled step of {owner!r}."
    return call


def _loop_body(step, length: int, offsets: tuple[int, ...], dt: float):
    """``(n, x, t0) -> (x after `length` steps, [states at `offsets`], all finite)``; step ``m``
    (1-based) runs at ``t0 + (m - 1)·dt``, as the eager loop computes it."""

    chunk = _chunk_function(step, length, offsets, dt)

    def body(n, x, t0):
        return chunk(x, [t0 + (n + i).to(torch.float64) * dt for i in range(length)])

    return body


class _Loop:
    """One compiled whole-loop driver for a (stepper, shape, dtype, chunk, save_every, dt).

    ``run(n0, n_end, x, t0, out)`` runs chunks of ``length`` steps from step ``n0`` while a whole
    chunk fits before ``n_end`` and every state is finite, writing the state after step ``m`` into
    ``out[m // save_every]`` when ``save_every`` divides ``m``. Returns ``(n, x, ok)``: the steps
    run (the last chunk included), whether every state was finite and the last state — or, when
    not, the start of the last chunk (the one holding a non-finite state).

    Once compiled, a call goes straight to inductor's compiled graph: the cache key fixes what
    dynamo's guards would check (shapes, dtype, device, grad mode) and the graph's inputs are
    built here (contiguous), so the guards are skipped.
    """

    def __init__(self, stepper, step, x, length, save_every, dt, options):
        self.owner = stepper
        self.length, self.save_every = length, save_every
        self.step, self.dt = step, float(dt)
        scalar = {"cpp.simdlen": 1} if x.numel() <= SCALAR_NUMEL else {}
        self.options = {**LOOP_OPTIONS, **scalar, **(options or {}).get("options", {})}
        self.compile_opts = {k: v for k, v in (options or {}).items() if k != "options"}
        self.owners = _count_dicts(stepper)
        self.per_chunk: list[dict] = []
        self.fn = None
        self._direct = None  # the compiled graph, called without dynamo once compiled
        self.compiled = False
        self.compile_s = 0.0

    def _trace(self, x):
        from torch.fx.experimental.proxy_tensor import make_fx

        k, s = self.length, self.save_every
        offsets = tuple(range(s, k + 1, s)) if s <= k else (k,)
        body = _loop_body(self.step, k, offsets, self.dt)
        n = torch.zeros((), dtype=torch.int64, device=x.device)
        t0 = torch.zeros((), dtype=torch.float64, device=x.device)
        real = [o.counts for o in self.owners]
        scratch = [dict.fromkeys(c, 0) for c in real]
        try:  # the trace runs the chunk once: its counts are the per-chunk counts, not real ones
            for o, c in zip(self.owners, scratch, strict=True):
                o.counts = c
            with torch.no_grad():
                gm = make_fx(body)(n, x, t0)
        finally:
            for o, c in zip(self.owners, real, strict=True):
                o.counts = c
        self.per_chunk = scratch
        return gm, offsets

    def _build(self, x):
        gm, offsets = self._trace(x)
        k, s = self.length, self.save_every
        from torch._higher_order_ops import while_loop

        def drive(n0, nmax, x0, t0, out):
            trash = out.shape[0] - 1

            def cond(n, x, ok):
                return (n < nmax) & ok

            def body(n, x, ok):
                x_new, kept, finite = gm(n, x, t0)
                for off, state in zip(offsets, kept, strict=True):
                    m = n + off
                    row = m // s
                    if s > k:  # a save only when the chunk ends on a save point
                        row = torch.where(m % s == 0, row, trash)
                    out.index_put_((row.reshape(1),), state.unsqueeze(0))
                # a chunk with a non-finite state hands back its start (and stops the loop)
                return n + k, torch.where(finite, x_new, x), finite

            ok0 = torch.ones((), dtype=torch.bool, device=x0.device)
            return while_loop(cond, body, (n0, x0, ok0))

        fn = _fresh_code(drive, f"physres_loop_{id(self)}")
        if self.compile_opts:  # the caller's own torch.compile options: dynamo on every call
            return torch.compile(
                fn, fullgraph=True, dynamic=False, options=self.options, **self.compile_opts
            )
        inductor = torch._TorchCompileInductorWrapper(None, self.options, False)

        def backend(graph, example_inputs):
            compiled = inductor(graph, example_inputs)
            self._inputs = _graph_inputs(graph, ("n0", "nmax", "x0", "t0", "out"))
            self._direct = compiled if self._inputs is not None else None
            return compiled

        return torch.compile(fn, fullgraph=True, dynamic=False, backend=backend)

    def run(self, n0: int, n_end: int, x, t0: float, out):
        dev = x.device
        nmax = n_end - self.length + 1  # a chunk starting at n runs while n + length <= n_end
        args = (
            torch.tensor(n0, dtype=torch.int64, device=dev),
            torch.tensor(nmax, dtype=torch.int64, device=dev),
            x.contiguous(),
            torch.tensor(t0, dtype=torch.float64, device=dev),
            out,
        )
        with torch.no_grad():
            if self._direct is not None:
                # a cache hit: the signature (shape, dtype, device, grad mode) is the cache key
                # and the graph's inputs are built right here, so dynamo's guards are skipped
                n, x1, ok = self._direct(
                    *[args[i] if i >= 0 else out.shape[0] for i in self._inputs]
                )
            elif not self.compiled:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DeprecationWarning)
                    warnings.filterwarnings("ignore", _DYNAMO_GRAD_WARNING)
                    start = time.perf_counter()
                    self.fn = self._build(x)
                    torch._dynamo.mark_dynamic(out, 0)
                    n, x1, ok = self.fn(*args)
                    self.compile_s = time.perf_counter() - start
                self.compiled = True
                stats["compiles"] += 1
                stats["compile_s"] += self.compile_s
            else:
                torch._dynamo.mark_dynamic(out, 0)
                with torch.compiler.set_stance("fail_on_recompile"):
                    n, x1, ok = self.fn(*args)
        n = int(n)  # the one host sync of the run
        ok = bool(ok)
        chunks = (n - n0) // self.length
        for owner, counts in zip(self.owners, self.per_chunk, strict=True):
            for key, v in counts.items():
                owner.counts[key] = owner.counts.get(key, 0) + v * chunks
        stats["compiled_chunks"] += chunks
        return n, x1, ok


def _graph_inputs(graph, names) -> list[int] | None:
    """Where each input of a dynamo graph of ``f(*names)`` comes from: the index of the argument
    (-1: the size of the last argument's first dimension, its one dynamic size); None when it
    takes anything else (e.g. a module's parameters)."""
    recipe = []
    for node in graph.graph.find_nodes(op="placeholder"):
        source = getattr(node.meta.get("grapharg"), "source", None)
        name = getattr(source, "local_name", None)
        if name in names:
            recipe.append(names.index(name))
        elif getattr(getattr(source, "base", None), "local_name", None) == names[-1] and (
            getattr(source, "idx", None) == 0
            and getattr(source, "prop", None) is not None
            and source.prop.name == "SIZE"
        ):
            recipe.append(-1)
        else:
            return None
    return recipe if sorted(i for i in recipe if i >= 0) == list(range(len(names))) else None


def _loop_key(stepper, x, length, save_every, dt, options):
    return ("loop", *_key(stepper, x, length, (save_every,), dt, options)[:-3], repr(options))


def get_loop(stepper, step, x, length, save_every, dt, options):
    """The cached whole-loop driver for this signature (compiled on its first run); None when
    this signature failed before."""
    return _entry(
        _loop_key(stepper, x, length, save_every, dt, options),
        stepper,
        lambda: _Loop(stepper, step, x, length, save_every, dt, options),
    )


def loop_cached(stepper, x, length, save_every, dt, options) -> bool:
    """Whether a compiled whole-loop driver for this signature is ready."""
    entry = _CACHE.get(_loop_key(stepper, x, length, save_every, dt, options))
    return entry is not None and entry is not _FAILED and entry.compiled


def mark_loop_failed(stepper, x, length, save_every, dt, options, err) -> None:
    _CACHE[_loop_key(stepper, x, length, save_every, dt, options)] = _FAILED
    log.debug("whole-loop driver failed, using compiled chunks: %s: %s", type(err).__name__, err)

"""Build a model that fits a trajectory file: state shape, complex states, known physics.

The defaults are chosen from the data and recorded with their reasons in
``model.training_info["model"]`` (``fit`` keeps them and prints them once):

* ``dtype``: float64 for float64 data;
* the ResNet's block (``net`` left ``"auto"``, real states not on a grid, no declared linear
  invariants, no MLP option such as ``width`` given): a polynomial block
  (:class:`~physres.models.PolynomialField`, ``z + W·φ(z)``, fitted exactly by least squares)
  when one reaches the data's precision, else the MLP below. Candidates of degree 1 to
  :data:`POLY_DEGREES` (at most :data:`POLY_FEATURES` monomials and one per
  :data:`POLY_ROWS_PER_FEATURE` training pairs) are fitted by
  :func:`~physres.training.lstsq.solve` on the training split's pairs at the model's step
  (``frame_step`` of ``config``) and scored on the validation trajectories' pairs by the rms
  one-step error over the rms step, both in normalised units. The lowest degree within 2× of
  the best error at most :data:`POLY_TOLERANCE` (1e-6) is taken if its closed loop from each
  validation trajectory's first state over that trajectory's span (at most
  :data:`POLY_LOOP_STEPS` steps) stays within
  :data:`POLY_BOUND` × the training data's largest normalised value (else the next best).
  Measured on the ``physres generate`` defaults: Lorenz-63 at dt = 0.01 reaches 4.0e-9 at
  degree 6 (degree 5: 1.7e-7, 4: 7.9e-6); the oscillator 2.3e-10 at degree 1 (its flow map
  is linear); the pendulum at dt = 0.5 only 1.8e-5 (degree 5): it keeps the MLP, as does
  Robertson, by its declared invariants (a free polynomial at dt = 1 reaches 9.6e-5 at
  degree 6 and is unbounded in closed loop);
* the ResNet's MLP ``width``: the widest of :data:`WIDTHS` whose dense Levenberg–Marquardt
  finish takes all of fit's default ``polish_windows`` within its flop budget
  (:func:`~physres.training.lm.dense_windows`), with a ``linear_skip`` (the network learns
  only the nonlinear remainder). Many windows per parameter is what makes the finish
  generalise: on Robertson, 16 wide on 4096 windows reaches 6e-4 where 32 wide on the 399
  windows its budget allows ends at 5 % (the finish was rejected by validation). For states
  too large for any of them: the 64-wide MLP and the matrix-free finish;
* ``kind="resnet"`` on a system that declares exact linear invariants
  (``System.linear_invariants``, e.g. Robertson's mass): a
  :class:`~physres.models.ProjectedEmulator` around that ResNet, which keeps them to round-off.
"""

from __future__ import annotations

import inspect

import torch

from .lm import MAX_PARAMS, MIN_DENSE_WINDOWS, dense_windows

KINDS = ("resnet", "node", "implicit", "hybrid")
WIDTHS = (64, 48, 32, 16)  # candidate MLP widths of the default ResNet, widest first
DEFAULT_WIDTH = 64  # the ResNet's own default, kept when no candidate fits the dense finish
# The polynomial block (see module doc): degrees 1..POLY_DEGREES, at most POLY_FEATURES
# monomials and POLY_ROWS_PER_FEATURE training pairs per monomial, fitted on at most POLY_PAIRS
# pairs; chosen when its held-out one-step error is at most POLY_TOLERANCE of the step's rms
# size and its closed loop stays within POLY_BOUND × the training data's largest |z|.
POLY_DEGREES = 6
POLY_FEATURES = 500
POLY_ROWS_PER_FEATURE = 20
POLY_PAIRS = 50_000
POLY_TOLERANCE = 1e-6
POLY_BOUND = 2.0
POLY_VALUES = 1 << 22  # state values read per split at most (whole trajectories)
POLY_LOOP_STEPS = 5000  # steps of the closed-loop check at most


def model_for(data_path, kind: str = "resnet", *, project="auto", config=None, **kwargs):
    """A fresh model for the trajectories in ``data_path``.

    ``state_shape`` and ``complex_state`` come from the file; for models built on a network,
    ``net="auto"`` (default) picks ``"conv1d"`` for grid systems and ``"mlp"`` otherwise;
    ``kind="hybrid"`` takes its coarse physics from the file's system (name and parameters).
    For ``kind="resnet"`` on an MLP, ``width``, ``net_options["linear_skip"]`` and ``dtype``
    default to the choices in the module docstring; ``project`` (``"auto"``, True, False)
    wraps it in a :class:`~physres.models.ProjectedEmulator` on the system's declared linear
    invariants (auto: when there are any). ``kind="projected"`` takes its ``invariants`` from
    the system unless given. Other keyword arguments go to the model's constructor, e.g.
    ``model_for(path, "unitary_cayley", system=known)``. Every automatic choice and its reason
    is in ``model.training_info["model"]``. ``config``: the :class:`TrainConfig` the model
    will be fitted with (its ``frame_step`` and split set the step and the pairs the block is
    chosen on; default ``TrainConfig()``).

    >>> model = model_for("oscillator.h5", "node", width=64)  # doctest: +SKIP
    """
    from .. import data as _data
    from .. import systems as _systems
    from ..models.base import REGISTRY, LearnedStepper

    if project not in ("auto", True, False):
        raise ValueError(f"`project` must be 'auto', True or False, got {project!r}")
    cls = REGISTRY.resolve(kind)
    if not issubclass(cls, LearnedStepper):
        raise ValueError(
            f"`kind` must name a learned stepper ({', '.join(KINDS)}, ...), got {kind!r}"
        )
    with _data.open(data_path) as f:
        shape, dtype, grid = tuple(f.state_shape), f.dtype, f.grid
        system, params = f.system_name, dict(f.system_params)
    is_complex = dtype.is_complex
    choices: dict[str, str] = {}
    known = _systems.REGISTRY.resolve(system) if system in _systems.names() else None
    invariants = getattr(known, "linear_invariants", None)
    if kind == "projected":
        if "invariants" not in kwargs:
            if not invariants:
                raise ValueError(
                    f"`kind` = 'projected' needs `invariants`: the file's system "
                    f"{system!r} declares no linear invariants"
                )
            kwargs["invariants"] = [list(row) for row in invariants]
            choices["invariants"] = f"{system}.linear_invariants"
        return _recorded(cls(state_shape=shape, **kwargs), choices)
    takes_net = "net" in inspect.signature(cls.__init__).parameters
    use = (
        (bool(invariants) and kind == "resnet" and not is_complex) if project == "auto" else project
    )
    if takes_net and kind == "resnet" and kwargs.get("net", "auto") == "auto" and not is_complex:
        if use:
            choices["block"] = (
                "mlp: the system declares linear invariants (a ProjectedEmulator around the "
                "MLP keeps them)"
            )
        elif not grid:
            _polynomial_or_mlp(data_path, shape, kwargs, choices, config)
    if takes_net and kwargs.get("net", "auto") == "auto":
        kwargs["net"] = "conv1d" if grid and len(shape) <= 2 else "mlp"
        choices["net"] = f"{kwargs['net']}: " + (
            "a grid system" if kwargs["net"] == "conv1d" else "not a grid"
        )
    if kind == "hybrid":
        kwargs.setdefault("system", system)
        if kwargs["system"] == system:
            kwargs.setdefault("system_params", params)
    if kind == "resnet" and not is_complex:
        if "dtype" not in kwargs and dtype == torch.float64:
            kwargs["dtype"] = torch.float64
            choices["dtype"] = "float64: float64 data"
        if kwargs.get("net") == "mlp":
            _default_mlp(shape, kwargs, choices, config)
    model = cls(state_shape=shape, complex_state=is_complex, **kwargs)
    if use:
        from ..models import ProjectedEmulator

        if not invariants:
            raise ValueError(
                f"`project` = True needs linear invariants: the file's system "
                f"{system!r} declares none"
            )
        if kind != "resnet" or is_complex:
            raise ValueError(
                f"`project` = True wraps a real-state resnet, got `kind` = "
                f"{kind!r}" + (" on complex states" if is_complex else "")
            )
        model = ProjectedEmulator(
            state_shape=shape,
            invariants=[list(r) for r in invariants],
            model="resnet",
            model_options=kwargs,
        )
        choices["projection"] = (
            f"ProjectedEmulator: {system} declares exact linear "
            f"invariants {[list(r) for r in invariants]}, kept to "
            "round-off at every step"
        )
    return _recorded(model, choices)


def _polynomial_or_mlp(data_path, shape, kwargs: dict, choices: dict, config) -> None:
    """``net="poly"`` with the degree of the best polynomial block, when it reaches the data's
    precision on held-out pairs and stays bounded in closed loop; else nothing (the MLP
    follows). Every candidate's held-out error is recorded (see module doc)."""
    import math

    import numpy as np

    from .. import data as _data
    from ..models import ResNetEmulator
    from . import lstsq

    frame_step, fractions, split_seed = (
        _setting(config, name) for name in ("frame_step", "fractions", "split_seed")
    )
    given = [
        name
        for name, value, default in (
            ("width", kwargs.get("width"), None),
            ("net_options", kwargs.get("net_options") or None, None),
            ("depth", kwargs.get("depth", 1), 1),
            ("form", kwargs.get("form", "residual"), "residual"),
            ("stochastic_depth", kwargs.get("stochastic_depth", 0.0), 0.0),
            ("learn_scale", kwargs.get("learn_scale", False), False),
        )
        if value != default
    ]
    if given:
        choices["block"] = f"mlp: `{given[0]}` given (options of the MLP block)"
        return
    n = math.prod(shape)
    if n + 1 > POLY_FEATURES:
        choices["block"] = f"mlp: {n} state components, too many for a polynomial block"
        return
    fs = frame_step
    with _data.open(data_path) as f:
        split = _data.split_indices(len(f), fractions, split_seed)
        train_idx, val_idx = [int(i) for i in split["train"]], [int(i) for i in split["val"]]
        if not val_idx or f.states.shape[1] <= fs + 1:
            choices["block"] = "mlp: no held-out trajectory to choose a polynomial block on"
            return
        keep = max(1, POLY_VALUES // (f.states.shape[1] * n))  # trajectories read at most
        train_idx, val_idx = train_idx[:keep], val_idx[:keep]
        train = torch.from_numpy(np.asarray(f.states[train_idx], dtype=np.float64))
        held = torch.from_numpy(np.asarray(f.states[val_idx], dtype=np.float64))
        dt = fs * float(f.dt_save)
    if not (torch.isfinite(train).all() and torch.isfinite(held).all()):
        return  # fit names the bad trajectory
    flat = train.reshape(-1, n)
    mean, std = flat.mean(0), flat.std(0)
    if not bool((std > 0).all()):
        choices["block"] = "mlp: a component is constant in the training split"
        return
    x0 = train[:, :-fs].reshape(-1, *shape)
    x1 = train[:, fs:].reshape(-1, *shape)
    x0 = x0[:: max(1, x0.shape[0] // POLY_PAIRS)]
    x1 = x1[:: max(1, x1.shape[0] // POLY_PAIRS)]
    h0, h1 = held[:, :-fs].reshape(-1, *shape), held[:, fs:].reshape(-1, *shape)
    norm = std.reshape(shape)
    increment = float(((h1 - h0) / norm).pow(2).mean().sqrt())
    bound = POLY_BOUND * float(((flat - mean) / std).abs().max())
    frames = held[:, ::fs][:, : POLY_LOOP_STEPS + 1]  # closed loop over the held-out span
    errors, trials = {}, {}
    for degree in range(1, POLY_DEGREES + 1):
        features = math.comb(n + degree, degree)
        if features > min(POLY_FEATURES, x0.shape[0] // POLY_ROWS_PER_FEATURE):
            break
        with torch.random.fork_rng():
            trial = ResNetEmulator(
                state_shape=shape, net="poly", net_options={"degree": degree}, dtype=torch.float64
            )
        trial.set_normalization(mean.reshape(shape), std.reshape(shape))
        trial.dt = dt
        chunk = max(1, 65536 // features)
        lstsq.solve(
            trial, ((x0[i : i + chunk], x1[i : i + chunk]) for i in range(0, len(x0), chunk))
        )
        with torch.no_grad():
            miss = (trial.step(h0, 0.0, dt) - h1) / norm
        errors[degree] = float(miss.pow(2).mean().sqrt()) / increment
        trials[degree] = trial
    scores = {d: f"{e:.2e}" for d, e in errors.items()}
    passing = [d for d in errors if errors[d] <= POLY_TOLERANCE]
    low = min((errors[d] for d in passing), default=None)
    # the lowest degree as good as the best (within 2×) first, then the others, best first
    ranked = [d for d in passing if errors[d] <= 2 * low] if passing else []
    ranked += sorted((d for d in passing if d not in ranked), key=errors.get)
    best = None
    for degree in ranked:
        if _bounded(trials[degree], frames, dt, bound):
            best = (degree, errors[degree], trials[degree].blocks[0].n_features)
            break
        scores[degree] += " (unbounded closed loop)"
    table = ", ".join(f"degree {d}: {v}" for d, v in scores.items())
    if best is not None:
        degree, err, features = best
        kwargs["net"] = "poly"
        kwargs["net_options"] = {"degree": degree}
        choices["net"] = (
            f"poly, degree {degree} ({features} monomials): its held-out one-step error "
            f"{err:.2e} of the step is within {POLY_TOLERANCE:g} and its closed loop stays "
            "bounded; fitted exactly by least squares"
        )
        choices["block"] = (
            f"held-out one-step error / step size at dt = {dt:g} on {len(val_idx)} "
            f"validation trajectories: {table}"
        )
        return
    choices["block"] = (
        f"mlp: no polynomial block within {POLY_TOLERANCE:g} of the step on held-out pairs "
        f"at dt = {dt:g} ({table or 'none fits the pairs'})"
    )


@torch.no_grad()
def _bounded(model, frames, dt, bound: float) -> bool:
    """True when ``model`` run in closed loop from each trajectory's first frame over the
    trajectories' span stays finite and within ``bound`` in normalised units."""
    z = frames[:, 0]
    for _ in range(frames.shape[1] - 1):
        z = model.step(z, 0.0, dt)
        peak = float(model.normalize(z).abs().max())
        if not peak <= bound:  # NaN included
            return False
    return True


def _default_mlp(shape, kwargs: dict, choices: dict, config) -> None:
    """``width`` and ``linear_skip`` of a ResNet's MLP, when not given (see module doc), for
    the unroll and polish windows of ``config`` (default: ``TrainConfig``'s)."""
    from ..models import ResNetEmulator

    options = dict(kwargs.get("net_options") or {})
    k, wanted = _setting(config, "unroll"), _setting(config, "polish_windows")
    per_window = k * int(torch.Size(shape).numel())

    def fits(width: int, skip: bool) -> tuple[bool, int, int]:
        trial = {
            **kwargs,
            "width": width,
            "net_options": {**options, "linear_skip": options.get("linear_skip", skip)},
        }
        trial["dtype"] = torch.float32  # only counted
        with torch.random.fork_rng():  # the caller's seed sets the real model's weights
            n = sum(p.numel() for p in ResNetEmulator(state_shape=shape, **trial).parameters())
        windows = dense_windows(n, per_window)
        return n <= MAX_PARAMS and windows >= wanted, n, windows

    if "width" not in kwargs:
        for width in WIDTHS:
            ok, n, windows = fits(width, True)
            if ok:
                kwargs["width"] = width
                choices["width"] = (
                    f"{width}: the widest of {list(WIDTHS)} whose dense "
                    "Levenberg–Marquardt finish takes all "
                    f"{wanted} polish windows ({n} parameters; "
                    f"budget {windows} windows at K = {k})"
                )
                break
        else:
            kwargs["width"] = DEFAULT_WIDTH
            choices["width"] = (
                f"{DEFAULT_WIDTH}: the state is too large for a dense "
                f"Levenberg–Marquardt finish on {wanted} windows at any "
                f"of {list(WIDTHS)} (matrix-free Gauss–Newton instead)"
            )
    if "linear_skip" not in options:
        n, windows = fits(kwargs["width"], True)[1:]
        dense = n <= MAX_PARAMS and windows >= MIN_DENSE_WINDOWS
        options["linear_skip"] = dense
        kwargs["net_options"] = options
        choices["linear_skip"] = (
            "on: a learned linear map beside the MLP (exact for linear dynamics; the network "
            "learns the nonlinear remainder)"
            if dense
            else "off: the model is too large for the dense finish"
        )


def _setting(config, name: str):
    """Field ``name`` of ``config``, or ``TrainConfig``'s default for it when ``config`` is
    None (read off the class: no config is built)."""
    import dataclasses

    from .config import TrainConfig

    if config is not None:
        return getattr(config, name)
    (f,) = (f for f in dataclasses.fields(TrainConfig) if f.name == name)
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


def _recorded(model, choices: dict):
    if choices:
        model.training_info = {"model": dict(choices)}
    return model


def data_info(data_path) -> dict:
    """The file's system, its parameters and save step (for a model file's metadata)."""
    from .. import data as _data

    with _data.open(data_path) as f:
        return {
            "system": f.system_name,
            "system_params": dict(f.system_params),
            "dt_save": float(f.dt_save),
        }

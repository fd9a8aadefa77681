"""Build a model that fits a trajectory file: state shape, complex states, known physics.

The defaults are chosen from the data and recorded with their reasons in
``model.training_info["model"]`` (``fit`` keeps them and prints them once):

* ``dtype``: float64 for float64 data;
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


def model_for(data_path, kind: str = "resnet", *, project="auto", **kwargs):
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
    is in ``model.training_info["model"]``.

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
            _default_mlp(shape, kwargs, choices)
    model = cls(state_shape=shape, complex_state=is_complex, **kwargs)
    use = (
        (bool(invariants) and kind == "resnet" and not is_complex) if project == "auto" else project
    )
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


def _default_mlp(shape, kwargs: dict, choices: dict) -> None:
    """``width`` and ``linear_skip`` of a ResNet's MLP, when not given (see module doc)."""
    from ..models import ResNetEmulator
    from .config import TrainConfig

    options = dict(kwargs.get("net_options") or {})
    k, wanted = TrainConfig().unroll, TrainConfig().polish_windows
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
                    f"{wanted} default polish windows ({n} parameters; "
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

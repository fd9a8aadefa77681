"""Build a model that fits a trajectory file: state shape, complex states, known physics."""

from __future__ import annotations

import inspect

KINDS = ("resnet", "node", "implicit", "hybrid")


def model_for(data_path, kind: str = "resnet", **kwargs):
    """A fresh model for the trajectories in ``data_path``.

    ``state_shape`` and ``complex_state`` come from the file; for models built on a network,
    ``net="auto"`` (default) picks ``"conv1d"`` for grid systems and ``"mlp"`` otherwise;
    ``kind="hybrid"`` takes its coarse physics from the file's system (name and parameters).
    Other keyword arguments go to the model's constructor, e.g.
    ``model_for(path, "unitary_cayley", system=known)``.

    >>> model = model_for("oscillator.h5", "node", width=64)  # doctest: +SKIP
    """
    from .. import data as _data
    from ..models.base import REGISTRY, LearnedStepper

    cls = REGISTRY.resolve(kind)
    if not issubclass(cls, LearnedStepper):
        raise ValueError(f"`kind` must name a learned stepper ({', '.join(KINDS)}, ...), "
                         f"got {kind!r}")
    with _data.open(data_path) as f:
        shape, is_complex, grid = tuple(f.state_shape), f.dtype.is_complex, f.grid
        system, params = f.system_name, dict(f.system_params)
    takes_net = "net" in inspect.signature(cls.__init__).parameters
    if takes_net and kwargs.get("net", "auto") == "auto":
        kwargs["net"] = "conv1d" if grid and len(shape) <= 2 else "mlp"
    if kind == "hybrid":
        kwargs.setdefault("system", system)
        if kwargs["system"] == system:
            kwargs.setdefault("system_params", params)
    return cls(state_shape=shape, complex_state=is_complex, **kwargs)


def data_info(data_path) -> dict:
    """The file's system, its parameters and save step (for a model file's metadata)."""
    from .. import data as _data

    with _data.open(data_path) as f:
        return {"system": f.system_name, "system_params": dict(f.system_params),
                "dt_save": float(f.dt_save)}

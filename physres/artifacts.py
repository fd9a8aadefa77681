"""Model files: save and load learned integrators without pickling code.

A file (``torch.save`` zip) holds only tensors and plain values:

========================  ===============================================================
key                       content
========================  ===============================================================
``format``                ``"physres-model"``
``format_version``        ``1``
``class``                 registered model name (:mod:`physres.models` registry)
``config``                JSON of the constructor's keyword arguments
``dt``                    the step the model was trained for (or None)
``normalization``         ``{"mean", "std"}`` tensors of shape ``state_shape``
``state_dict``            parameters and buffers
``metadata``              JSON (training data, system, losses, ...)
``physres_version``       the version that wrote the file
========================  ===============================================================

Loading uses ``torch.load(weights_only=True)``: a file carrying a pickled object is refused
before anything in it runs, and the class comes from the registry, never from the file.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch

from ._version import __version__
from .errors import FormatError

FORMAT = "physres-model"
FORMAT_VERSION = 1


def save(model, path, metadata: dict | None = None) -> Path:
    """Write ``model`` (a registered :class:`~physres.models.LearnedStepper`) to ``path``.

    The write is atomic: a temporary file in the same directory, then a rename.
    ``metadata`` (JSON-able) is stored alongside. Returns the path.
    """
    path = Path(path)
    atomic_torch_save(payload(model, metadata), path)
    return path


def load(path, device=None):
    """Rebuild a model saved by :func:`save`, in eval mode, on ``device`` (default cpu).

    Raises :class:`~physres.errors.FormatError` for a file that is not a physres model file
    (including any file that would need unpickling of arbitrary objects).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file {str(path)!r} does not exist")
    data = read_payload(path)
    model = build_from_payload(data, path)
    return model.to(device) if device is not None else model


def metadata(path) -> dict:
    """The ``metadata`` dict stored in a model file."""
    return json.loads(read_payload(Path(path))["metadata"])


# --- payloads (shared with training checkpoints) ---------------------------------------------
def payload(model, metadata: dict | None = None) -> dict:
    from .models.base import REGISTRY, LearnedStepper

    if not isinstance(model, LearnedStepper):
        raise TypeError(f"`model` must be a physres.models.LearnedStepper, "
                        f"got {type(model).__name__}")
    name = type(model).name
    if not name or name not in REGISTRY or REGISTRY.resolve(name) is not type(model):
        raise TypeError(f"`model` class {type(model).__name__} is not registered; decorate it "
                        "with @physres.models.register('name') so it can be loaded")
    try:
        meta = json.dumps(metadata or {})
    except TypeError as exc:
        raise TypeError(f"`metadata` must be JSON-serialisable: {exc}") from None
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "class": name,
        "config": json.dumps(encode_config(model.config)),
        "dt": model.dt,
        "normalization": {k: v.detach().cpu() for k, v in model.normalization.items()},
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "metadata": meta,
        "physres_version": __version__,
    }


def read_payload(path: Path) -> dict:
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError, zip errors, truncation: all "not our format"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise FormatError(
            f"{str(path)!r} is not a loadable physres model file (refused by the safe "
            f"loader, nothing in it was executed): {first}"
        ) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise FormatError(f"{str(path)!r} is not a physres model file (no "
                          f"format = {FORMAT!r} tag)")
    if data.get("format_version") != FORMAT_VERSION:
        raise FormatError(f"{str(path)!r} has model format version "
                          f"{data.get('format_version')!r}; this physres reads version "
                          f"{FORMAT_VERSION}")
    missing = {"class", "config", "dt", "state_dict"} - set(data)
    if missing:
        raise FormatError(f"{str(path)!r} lacks {', '.join(sorted(missing))}")
    return data


def build_from_payload(data: dict, path) -> torch.nn.Module:
    from .models.base import REGISTRY, LearnedStepper

    try:
        cls = REGISTRY.resolve(data["class"])
    except ValueError as exc:
        raise FormatError(f"{str(path)!r}: {exc} (import the module that registers it "
                          "before loading)") from None
    if not issubclass(cls, LearnedStepper):
        raise FormatError(f"{str(path)!r}: class {data['class']!r} is not a learned stepper")
    config = decode_config(json.loads(data["config"]))
    try:
        model = cls(**config)
        model.load_state_dict(data["state_dict"], strict=True)
    except (TypeError, ValueError, RuntimeError) as exc:
        first = " ".join(str(exc).split())
        raise FormatError(f"{str(path)!r}: cannot rebuild {data['class']!r} from the file: "
                          f"{first}") from None
    model.dt = None if data["dt"] is None else float(data["dt"])
    model.eval()
    return model


def encode_config(value, where: str = "config"):
    """JSON form of constructor arguments (dtypes, systems and nested modules tagged)."""
    from .models.base import REGISTRY, Configurable
    from .systems import System

    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [encode_config(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise TypeError(f"`{where}` has non-string keys; model arguments must be JSON")
        return {k: encode_config(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, torch.dtype):
        return {"$dtype": str(value).removeprefix("torch.")}
    if isinstance(value, Configurable):
        name = type(value).name
        if not name or REGISTRY.resolve(name) is not type(value):
            raise TypeError(f"`{where}`: {type(value).__name__} is not registered")
        return {"$module": name, "config": encode_config(value.config, where)}
    if isinstance(value, System):
        return {"$system": type(value).name, "params": encode_config(value.params, where)}
    raise TypeError(f"`{where}` of type {type(value).__name__} cannot be stored in a model "
                    "file; model arguments must be JSON values, torch dtypes, systems or "
                    "registered physres.models modules")


def decode_config(value):
    from . import systems
    from .models.base import REGISTRY

    if isinstance(value, list):
        return [decode_config(v) for v in value]
    if isinstance(value, dict):
        if "$dtype" in value:
            dtype = getattr(torch, value["$dtype"], None)
            if not isinstance(dtype, torch.dtype):
                raise FormatError(f"unknown dtype {value['$dtype']!r} in a model file")
            return dtype
        if "$module" in value:
            return REGISTRY.resolve(value["$module"])(**decode_config(value["config"]))
        if "$system" in value:
            return systems.get(value["$system"], **decode_config(value["params"]))
        return {k: decode_config(v) for k, v in value.items()}
    return value


def atomic_torch_save(obj, path: Path) -> None:
    """``torch.save`` to a temporary file in the target directory, then ``os.replace``."""
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise FileNotFoundError(f"directory {str(directory)!r} for {str(path)!r} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise

"""Model files: save and load learned integrators without pickling code.

A file (``torch.save`` zip) holds only tensors and plain values:

========================  ===============================================================
key                       content
========================  ===============================================================
``format``                ``"physres-model"``
``format_version``        ``1``
``class``                 registered model name (:mod:`physres.models` registry)
``config``                JSON of the constructor's keyword arguments
``config_version``        the class's ``config_version`` (absent in older files: 1); on
                          load ``cls.upgrade_config`` maps older arguments to today's
``dt``                    the step the model was trained for (or None)
``normalization``         ``{"mean", "std"}`` tensors of shape ``state_shape``
``state_dict``            parameters and buffers
``metadata``              JSON object (training data, system, losses, ...)
``training_info``         JSON object or absent: the choices training made
                          (``model.training_info``, restored as ``stepper.training_info``)
``physres_version``       the version that wrote the file
========================  ===============================================================

Loading uses ``torch.load(weights_only=True)``: a file carrying a pickled object is refused
before anything in it runs, and the class comes from the registry, never from the file.
Every field is then checked (:func:`read_payload`) before anything is built from it: types,
JSON objects nested at most :data:`MAX_DEPTH` deep, a finite positive ``dt``, tensors in
``state_dict``. A model whose weights are not all finite is refused by :func:`load` (it
cannot step anything; ``check_finite=False`` loads it anyway, for inspection) and by
``physres validate``; :func:`save` refuses to write one.
"""

from __future__ import annotations

import io
import json
import math
import pickle
import re
import warnings
from pathlib import Path

import torch

from . import _io
from ._version import __version__
from .errors import FormatError

FORMAT = "physres-model"
FORMAT_VERSION = 1
MAX_DEPTH = 64  # deepest nesting of the JSON fields (config, metadata, training_info)


def save(model, path, metadata: dict | None = None) -> Path:
    """Write ``model`` (a registered :class:`~physres.models.LearnedStepper`) to ``path``.

    The write is atomic: a temporary file in the same directory, then a rename.
    ``metadata`` (JSON-able) is stored alongside, and ``model.training_info`` when the model
    has one (a JSON-able dict). A model with non-finite weights is refused (``ValueError``
    naming the tensor). Returns the path.
    """
    path = Path(path)
    atomic_torch_save(payload(model, metadata, check_finite=True), path)
    return path


def load(path, device=None, check_finite: bool = True):
    """Rebuild a model saved by :func:`save`, in eval mode, on ``device`` (default cpu).

    The ``training_info`` stored with it (if any) is restored as ``model.training_info``.

    Raises :class:`~physres.errors.FormatError`, naming the file and the field, for a file
    that is not a physres model file (including any file that would need unpickling of
    arbitrary objects) or whose fields are malformed, and, unless ``check_finite=False``,
    for weights or normalisation that are not all finite.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file {str(path)!r} does not exist")
    data = read_payload(path)
    if check_finite:
        _check_finite(data, path)
    model = build_from_payload(data, path)
    return model.to(device) if device is not None else model


def metadata(path) -> dict:
    """The ``metadata`` dict stored in a model file."""
    path = Path(path)
    return _json_field(path, "metadata", read_payload(path).get("metadata", "{}"))


# --- payloads (shared with training checkpoints) ---------------------------------------------
def payload(model, metadata: dict | None = None, check_finite: bool = False) -> dict:
    """The plain-data dict written by :func:`save` (and inside training checkpoints)."""
    from .models.base import REGISTRY, LearnedStepper

    if not isinstance(model, LearnedStepper):
        raise TypeError(
            f"`model` must be a physres.models.LearnedStepper, got {type(model).__name__}"
        )
    name = type(model).name
    if not name or name not in REGISTRY or REGISTRY.resolve(name) is not type(model):
        raise TypeError(
            f"`model` class {type(model).__name__} is not registered; decorate it "
            "with @physres.models.register('name') so it can be loaded"
        )
    meta = _dump_json("metadata", {} if metadata is None else metadata)
    info = getattr(model, "training_info", None)
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    normalization = {k: v.detach().cpu() for k, v in model.normalization.items()}
    if check_finite:
        for where, tensors in (("weights", state), ("normalization", normalization)):
            bad = _first_nonfinite(tensors)
            if bad is not None:
                raise ValueError(
                    f"`model` {where} {bad!r} hold non-finite values (nan or "
                    "inf); such a model cannot step anything and is not saved"
                )
    data = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "class": name,
        "config": json.dumps(encode_config(model.config)),
        "config_version": type(model).config_version,
        "dt": model.dt,
        "normalization": normalization,
        "state_dict": state,
        "metadata": meta,
        "physres_version": __version__,
    }
    if info is not None:
        data["training_info"] = _dump_json("model.training_info", info)
    return data


def _dump_json(name: str, value) -> str:
    """``value`` (a dict) as JSON text, checked like a file's field would be on reading."""
    if not isinstance(value, dict):
        raise TypeError(f"`{name}` must be a dict, got {type(value).__name__}")
    try:
        text = json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"`{name}` must be JSON-serialisable: {exc}") from None
    except RecursionError:
        raise ValueError(f"`{name}` is nested too deeply for JSON") from None
    depth = _json_depth(text)
    if depth > MAX_DEPTH:
        raise ValueError(
            f"`{name}` is nested {depth} levels deep; at most {MAX_DEPTH} can be stored"
        )
    return text


def _json_depth(text: str) -> int:
    """Deepest nesting of ``[`` / ``{`` in JSON text, strings skipped (no recursion)."""
    depth = deepest = 0
    for token in re.finditer(r'"(?:[^"\\]|\\.)*"|[\[\]{}]', text):
        c = token.group()
        if c in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif c in "]}":
            depth -= 1
    return deepest


def _json_field(path: Path, name: str, text, expected=dict):
    """Parse the JSON text field ``name`` of the file ``path``: a string holding a JSON value
    of type ``expected`` nested at most :data:`MAX_DEPTH` deep."""
    where = f"{str(path)!r}: field `{name}`"
    if not isinstance(text, str):
        raise FormatError(f"{where} must be JSON text, got {type(text).__name__}")
    depth = _json_depth(text)
    if depth > MAX_DEPTH:
        raise FormatError(f"{where} is nested {depth} levels deep (at most {MAX_DEPTH})")
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise FormatError(f"{where} is not valid JSON: {_first_line(exc)}") from None
    if not isinstance(value, expected):
        raise FormatError(
            f"{where} must be a JSON {_JSON_NAMES.get(expected, 'value')}, "
            f"got {type(value).__name__} {_short(value)}"
        )
    return value


_JSON_NAMES = {dict: "object"}


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _safe_load(path: Path, what: str):
    """``torch.load(weights_only=True)``; a refusal says why without quoting torch's advice
    to retry with the unsafe loader."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's notes on pickle protocols
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
        reason = (
            f"it references {found.group(1)!r}, which is code, not data"
            if found
            else "it holds pickled objects other than tensors and plain values"
        )
    except Exception as exc:  # zip errors, truncation, not a torch file at all
        reason = _first_line(exc)
        if "weights_only" in reason:
            reason = "it holds pickled objects other than tensors and plain values"
        reason = f"unreadable ({reason})"
    raise FormatError(
        f"{str(path)!r} is not a loadable physres {what} file (refused by the "
        f"safe loader, nothing in it was executed): {reason}"
    )


def read_payload(path: Path) -> dict:
    """The checked fields of a model file (see the module docstring); ``FormatError`` naming
    the file and the field otherwise. JSON fields stay text (parse with the field checks)."""
    path = Path(path)
    data = _safe_load(path, "model")
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise FormatError(f"{str(path)!r} is not a physres model file (no format = {FORMAT!r} tag)")
    if data.get("format_version") != FORMAT_VERSION:
        raise FormatError(
            f"{str(path)!r} has model format version "
            f"{data.get('format_version')!r}; this physres reads version "
            f"{FORMAT_VERSION}"
        )
    missing = {"class", "config", "dt", "state_dict"} - set(data)
    if missing:
        raise FormatError(f"{str(path)!r} lacks {', '.join(sorted(missing))}")
    check_payload(data, path)
    return data


def check_payload(data: dict, path) -> None:
    """Check the fields of a model payload (types, JSON, depth, dt, tensors)."""
    path = Path(path)
    if not isinstance(data["class"], str):
        raise FormatError(
            f"{str(path)!r}: field `class` must be a model name (str), got "
            f"{type(data['class']).__name__}"
        )
    _json_field(path, "config", data["config"])
    _json_field(path, "metadata", data.get("metadata", "{}"))
    if data.get("training_info") is not None:
        _json_field(path, "training_info", data["training_info"])
    version = data.get("config_version", 1)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise FormatError(
            f"{str(path)!r}: field `config_version` must be an int ≥ 1, got {_short(version)}"
        )
    dt = data["dt"]
    if dt is not None and (
        isinstance(dt, bool) or not isinstance(dt, (int, float)) or not math.isfinite(dt) or dt <= 0
    ):
        raise FormatError(
            f"{str(path)!r}: field `dt` must be a finite number > 0 or None, got {_short(dt)}"
        )
    for name in ("state_dict", "normalization"):
        tensors = data.get(name, {})
        if not isinstance(tensors, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in tensors.items()
        ):
            raise FormatError(f"{str(path)!r}: field `{name}` must map names to tensors")


def _first_nonfinite(tensors: dict) -> str | None:
    for key, value in tensors.items():
        if (value.is_floating_point() or value.is_complex()) and not bool(
            torch.isfinite(value).all()
        ):
            return key
    return None


def _check_finite(data: dict, path: Path) -> None:
    for name in ("state_dict", "normalization"):
        bad = _first_nonfinite(data.get(name, {}))
        if bad is not None:
            raise FormatError(
                f"{str(path)!r}: `{name}` entry {bad!r} holds non-finite values "
                "(nan or inf): the model diverged or was saved broken and cannot "
                "step anything"
            )


def build_from_payload(data: dict, path) -> torch.nn.Module:
    from .models.base import REGISTRY, LearnedStepper

    try:
        cls = REGISTRY.resolve(data["class"])
    except ValueError as exc:
        raise FormatError(
            f"{str(path)!r}: {exc} (import the module that registers it before loading)"
        ) from None
    if not issubclass(cls, LearnedStepper):
        raise FormatError(f"{str(path)!r}: class {data['class']!r} is not a learned stepper")
    check_payload(data, path)
    try:
        config = decode_config(_json_field(Path(path), "config", data["config"]))
        model = cls(**cls.upgrade_config(config, data.get("config_version", 1)))
        model.load_state_dict(data["state_dict"], strict=True)
    except (TypeError, ValueError, RuntimeError, KeyError) as exc:
        first = " ".join(str(exc).split())
        raise FormatError(
            f"{str(path)!r}: cannot rebuild {data['class']!r} from the file's "
            f"field `config`: {first}"
        ) from None
    model.dt = None if data["dt"] is None else float(data["dt"])
    if data.get("training_info") is not None:
        model.training_info = _json_field(Path(path), "training_info", data["training_info"])
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
        return {
            "$module": name,
            "config": encode_config(value.config, where),
            "$version": type(value).config_version,
        }
    if isinstance(value, System):
        return {"$system": type(value).name, "params": encode_config(value.params, where)}
    raise TypeError(
        f"`{where}` of type {type(value).__name__} cannot be stored in a model "
        "file; model arguments must be JSON values, torch dtypes, systems or "
        "registered physres.models modules"
    )


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
            cls = REGISTRY.resolve(value["$module"])
            return cls(
                **cls.upgrade_config(decode_config(value["config"]), value.get("$version", 1))
            )
        if "$system" in value:
            return systems.get(value["$system"], **decode_config(value["params"]))
        return {k: decode_config(v) for k, v in value.items()}
    return value


def atomic_torch_save(obj, path: Path) -> None:
    """``torch.save`` into memory, then :func:`physres._io.write_bytes` (atomic, normal
    permissions; a full disk is an ``OSError`` naming ``path``)."""
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise FileNotFoundError(f"directory {str(directory)!r} for {str(path)!r} does not exist")
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    _io.write_bytes(path, buffer.getvalue())

"""``physres train DATA.h5 --model KIND --out MODEL.pt [--config FILE.toml] [...]``.

The training options are generated from the fields of :class:`physres.training.TrainConfig`
(one source: same names, same defaults, help from each field's ``metadata["help"]``, else
from the class docstring), so the command line cannot drift from the library. Model kinds
come from the model registry.

Data parallel: ``torchrun --standalone --nproc_per_node 2 "$(which physres)" train ...``
(rank 0 writes the model, the checkpoint and the logs).
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import os
import re
import types
import typing
from pathlib import Path

import torch

_DTYPES = {"float32": torch.float32, "float64": torch.float64}

# TrainConfig fields the command sets itself (from --out, --resume, --no-progress).
_OWN = {
    "checkpoint": "--checkpoint",
    "log": "--log",
    "resume": "--resume",
    "progress": "--no-progress",
}
# Fixed choices of string fields, for argparse (TrainConfig checks them again).
_CHOICES = {"schedule": "SCHEDULES", "polish_method": "POLISH_METHODS"}


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Defaults shown as ``(default: X)``; ``None`` shown as what it means here."""

    def _get_help_string(self, action):
        text = action.help or ""
        if (
            "%(default)" in text
            or action.default is argparse.SUPPRESS
            or action.option_strings == []
            or isinstance(action, argparse._HelpAction)
        ):
            return text
        if action.default is None:
            return text + " (default: none)"
        if isinstance(action.default, (list, tuple)):
            return text + " (default: " + " ".join(map(str, action.default)) + ")"
        return text + " (default: %(default)s)"


def add_parser(subparsers) -> None:
    from .. import models

    kinds = models.names(models.LearnedStepper)
    p = subparsers.add_parser(
        "train",
        help="train a learned integrator on an HDF5 trajectory file",
        formatter_class=_HelpFormatter,
        description="Train a learned integrator (a model kind from the model registry: "
        f"{', '.join(kinds)}) on the reference trajectories of DATA.h5 and "
        "save it as a model file usable by `physres validate`, physres.load and "
        "physres.rollout. The training options are the fields of "
        "physres.training.TrainConfig with its defaults; `none` turns off an "
        "optional setting; model and optimiser choices left open are made from "
        "the data and printed (physres.training.model_for, fit). Time: the "
        "progress bar shows the ETA. On the 64 default trajectories of the "
        "oscillator, the pendulum or Robertson (--frame-step 10) the default "
        "resnet (a short AdamW warm-up, then up to 800 dense Levenberg-Marquardt "
        "iterations) took 5 to 190 s of CPU time; larger states, longer unrolls "
        "and Neural ODEs cost more per step.",
    )
    p.add_argument("data", metavar="DATA.h5", help="trajectory file (physres generate)")
    p.add_argument(
        "--model", choices=kinds, default="resnet", help="model kind (physres.models registry)"
    )
    p.add_argument("--out", required=True, metavar="MODEL.pt", help="model file to write")
    group = p.add_argument_group("training (physres.training.TrainConfig)")
    group.add_argument(
        "--config",
        metavar="FILE.toml",
        default=None,
        help="a TOML table of TrainConfig fields (the options below, with _ for "
        "-); an option given on the command line wins over the file",
    )
    add_config_arguments(group)
    m = p.add_argument_group("model (constructor arguments; each kind takes those it has)")
    m.add_argument(
        "--net",
        default="auto",
        help="block/field network: mlp, conv1d, poly or auto (conv1d on grids; resnet: a "
        "polynomial block when it fits held-out pairs to data precision, else mlp)",
    )
    m.add_argument(
        "--width",
        type=int,
        default=None,
        help="hidden width of the network (none: the model's default; resnet on an "
        "mlp: chosen from the data, see physres.training.model_for)",
    )
    m.add_argument("--layers", type=int, default=2, help="hidden layers per network")
    m.add_argument("--depth", type=int, default=1, help="resnet: residual blocks per step")
    m.add_argument("--tie-weights", action="store_true", help="resnet: one shared block")
    m.add_argument(
        "--stochastic-depth",
        type=float,
        default=0.0,
        help="resnet: probability of dropping a block while training",
    )
    m.add_argument(
        "--form",
        choices=("residual", "euler"),
        default="residual",
        help="resnet: x + g(x) or x + dt·f(x)",
    )
    m.add_argument("--activation", default="tanh", help="activation of the network")
    m.add_argument(
        "--linear-skip",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="mlp: add a learned linear map of the input (exact for linear "
        "dynamics; none: resnet on a small state chooses it)",
    )
    m.add_argument(
        "--method",
        default="rk4",
        help="node: rk4 (classical) or rk38 (3/8 rule) on a fixed grid, or a "
        "torchdiffeq method such as dopri5 (adaptive)",
    )
    m.add_argument(
        "--step-size",
        type=float,
        default=None,
        help="node: internal step of fixed-grid methods (none: dt)",
    )
    m.add_argument("--rtol", type=float, default=1e-6, help="node: adaptive tolerance")
    m.add_argument("--atol", type=float, default=1e-8, help="node: adaptive tolerance")
    m.add_argument("--adjoint", action="store_true", help="node: adjoint gradients")
    m.add_argument("--coarse", default="rk4", help="hybrid: coarse physres stepper")
    m.add_argument(
        "--coarse-substeps", type=int, default=1, help="hybrid: coarse steps per model step"
    )
    m.add_argument(
        "--dtype",
        choices=sorted(_DTYPES),
        default=None,
        help="network parameters' dtype (none: the model's default; resnet: the data's)",
    )
    r = p.add_argument_group("files and runtime")
    r.add_argument("--checkpoint", default=None, help="checkpoint path (none: MODEL.pt.ckpt)")
    r.add_argument("--resume", action="store_true", help="continue from the checkpoint")
    r.add_argument(
        "--overwrite",
        action="store_true",
        help="start over even if the checkpoint exists (it is replaced)",
    )
    r.add_argument(
        "--log",
        default=None,
        help="loss log prefix: writes PREFIX.csv and PREFIX.json (none: MODEL_train)",
    )
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


# --- options generated from TrainConfig -------------------------------------------------------
def config_fields() -> list[dataclasses.Field]:
    """The TrainConfig fields that become options (all but those the command sets itself)."""
    from ..training import TrainConfig

    return [f for f in dataclasses.fields(TrainConfig) if f.name not in _OWN]


def option(name: str) -> str:
    return "--" + name.replace("_", "-")


def field_help(field: dataclasses.Field, doc: str) -> str:
    """``metadata["help"]`` of a field, else the clause of the class docstring that names it,
    else a line generated from the docstring section and the field's name."""
    text = (getattr(field, "metadata", None) or {}).get("help")
    if isinstance(text, str) and text.strip():
        return " ".join(text.split())
    heading, sections = "TrainConfig", []
    for line in inspect.cleandoc(doc or "").splitlines():
        if line and not line[0].isspace():
            heading = line.strip()
            sections.append((heading, []))
        elif sections:
            sections[-1][1].append(line.strip())
    plain = field.name.replace("_", " ")
    for heading, lines in sections:
        body = " ".join(lines)
        for clause in re.split(r"(?<=[;.])\s+|,\s+(?=``)", body):
            if f"``{field.name}``" not in clause:
                continue
            clause = re.sub(r":\w+:`([^`]*)`", r"\1", clause)
            clause = re.sub(r"``([^`]*)``", r"\1", clause).strip(" ;,.")
            if len(clause.replace(field.name, "").split()) >= 3:
                return f"{heading}: {clause}"
            return f"{heading}: {plain}"
    return f"{heading if sections else 'TrainConfig'}: {plain}"


def _optional(annotation) -> tuple[object, bool]:
    """(inner type, whether None is allowed) of ``X`` or ``X | None``."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return (args[0] if len(args) == 1 else str), len(args) < len(typing.get_args(annotation))
    return annotation, False


def _parser_of(kind, allow_none: bool, name: str):
    def parse(text: str):
        if allow_none and text.strip().lower() in ("none", "off"):
            return None
        if kind is str:
            return text
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{option(name)} expects {kind.__name__}"
                + (" or none" if allow_none else "")
                + f", got {text!r}"
            ) from None

    parse.__name__ = getattr(kind, "__name__", "value")
    return parse


_TRACKED: dict[type, type] = {}


def _tracked(cls: type) -> type:
    """``cls`` (an argparse Action) that also notes in ``namespace.given_options`` that its
    option was given, so ``--config`` can leave it alone."""
    if cls not in _TRACKED:

        def __call__(self, parser, namespace, values, option_string=None):  # noqa: N807
            given = set(getattr(namespace, "given_options", ()))
            namespace.given_options = given | {self.dest}
            cls.__call__(self, parser, namespace, values, option_string)

        _TRACKED[cls] = type(f"Tracked{cls.__name__}", (cls,), {"__call__": __call__})
    return _TRACKED[cls]


def add_config_arguments(group) -> None:
    """One option per TrainConfig field: type from the annotation, default from the field."""
    from ..training import TrainConfig
    from ..training import config as config_module

    hints = typing.get_type_hints(TrainConfig)
    doc = inspect.getdoc(TrainConfig) or ""
    for field in config_fields():
        kind, allow_none = _optional(hints.get(field.name, str))
        default = (
            field.default
            if field.default is not dataclasses.MISSING
            else (
                field.default_factory()
                if field.default_factory is not dataclasses.MISSING
                else None
            )
        )
        text = field_help(field, doc).replace("%", "%%")
        if allow_none:
            text += " (none: off / automatic)"
        kwargs = dict(dest=f"cfg_{field.name}", default=default, help=text)
        if kind is bool:
            action = group.add_argument(
                option(field.name), action=argparse.BooleanOptionalAction, **kwargs
            )
        elif typing.get_origin(kind) is tuple:
            items = typing.get_args(kind)
            action = group.add_argument(
                option(field.name),
                nargs=len(items),
                metavar="X",
                type=_parser_of(items[0], False, field.name),
                **kwargs,
            )
        else:
            kind = kind if kind in (int, float, str) else str
            choices = getattr(config_module, _CHOICES.get(field.name, ""), None)
            action = group.add_argument(
                option(field.name),
                type=_parser_of(kind, allow_none, field.name),
                choices=choices,
                metavar=field.name.upper(),
                **kwargs,
            )
        action.__class__ = _tracked(type(action))


def train_config(args, **own):
    """The TrainConfig of the parsed options, with the fields of ``--config FILE.toml`` that
    were not given as options; an invalid value names its option (or the file and key)."""
    from .. import _overrides
    from ..training import TrainConfig

    values = {f.name: getattr(args, f"cfg_{f.name}") for f in config_fields()}
    for name, value in values.items():
        if isinstance(value, list):
            values[name] = tuple(value)
    from_file, where = set(), ""
    if getattr(args, "config", None):
        where = f"--config {str(args.config)!r}"
        table = _overrides.read_table(args.config)
        _overrides.check_keys(table, values, "TrainConfig", where)
        given = getattr(args, "given_options", set())
        for key, value in table.items():
            if f"cfg_{key}" not in given:
                values[key] = _overrides.coerce(values[key], value, f"{where}: `{key}`")
                from_file.add(key)
    try:
        return TrainConfig(**values, **own)
    except (TypeError, ValueError) as exc:
        message = str(exc)
        named = re.match(r"`(\w+)`", message)
        if named and named.group(1) in from_file:
            raise ValueError(f"{where}: {message}") from None
        if named and named.group(1) in values:
            raise ValueError(f"{option(named.group(1))}: {message}") from None
        if named and named.group(1) in own:
            raise ValueError(f"{_OWN.get(named.group(1), named.group(1))}: {message}") from None
        raise ValueError(message) from None


def check_device(device: str | None) -> None:
    """``--device``: cpu, cuda or cuda:N, and cuda only where CUDA is available."""
    if device is None:
        return
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        raise ValueError(f"--device must be cpu or cuda (cuda:N), got {device!r}") from None
    if parsed.type not in ("cpu", "cuda"):
        raise ValueError(f"--device must be cpu or cuda (cuda:N), got {device!r}")
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"--device {device!r} was requested but CUDA is not available; use --device cpu"
        )


# --- the command ------------------------------------------------------------------------------
def _model_kwargs(args, cls) -> dict:
    """The model options the class's constructor takes (``net_options`` for --linear-skip)."""
    accepted = set(inspect.signature(cls.__init__).parameters)
    given = {
        "net": args.net,
        "width": args.width,
        "layers": args.layers,
        "activation": args.activation,
        "dtype": None if args.dtype is None else _DTYPES[args.dtype],
        "depth": args.depth,
        "tie_weights": args.tie_weights,
        "stochastic_depth": args.stochastic_depth,
        "form": args.form,
        "method": args.method,
        "step_size": args.step_size,
        "rtol": args.rtol,
        "atol": args.atol,
        "adjoint": args.adjoint,
        "coarse": args.coarse,
        "coarse_substeps": args.coarse_substeps,
    }
    if args.linear_skip is not None:
        given["net_options"] = {"linear_skip": args.linear_skip}
    return {k: v for k, v in given.items() if k in accepted and v is not None}


def run(args) -> int:
    from .. import artifacts, models, training
    from ..data import open as open_data
    from ..training.build import data_info, model_for

    data, out = Path(args.data), Path(args.out)
    if not data.is_file():
        raise FileNotFoundError(f"data file {str(data)!r} does not exist")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"directory of --out {str(out)!r} does not exist")
    if not os.access(out.parent, os.W_OK):
        raise PermissionError(f"cannot write --out {str(out)!r}: directory not writable")
    check_device(args.cfg_device)
    checkpoint = args.checkpoint or f"{out}.ckpt"
    if args.resume and args.overwrite:
        raise ValueError("--resume and --overwrite exclude each other")
    if Path(checkpoint).exists() and not (args.resume or args.overwrite):
        raise FileExistsError(
            f"checkpoint {checkpoint!r} exists (an earlier run to "
            f"{str(out)!r}); continue it with --resume or start over "
            "with --overwrite"
        )
    config = train_config(
        args,
        checkpoint=checkpoint,
        resume=args.resume,
        log=args.log or str(out.with_name(out.stem + "_train")),
        progress=not args.no_progress,
    )
    check_device(config.device)  # it may come from --config
    cls = models.REGISTRY.resolve(args.model)
    kwargs = _model_kwargs(args, cls)
    if args.model != "hybrid" and "system" in inspect.signature(cls.__init__).parameters:
        with open_data(data) as f:  # e.g. unitary_cayley: the known part of the physics
            kwargs["system"] = f.make_system()
    torch.manual_seed(config.seed)
    try:
        model = model_for(data, args.model, config=config, **kwargs)
    except TypeError as exc:
        raise ValueError(
            f"--model {args.model} cannot be built from {str(data)!r} on the "
            f"command line: {' '.join(str(exc).split())}"
        ) from None
    args.interrupt_hint = (
        f"continue with --resume (the last checkpoint is {checkpoint!r})"
        if config.checkpoint
        else None
    )
    result = training.fit(model, data, config)
    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    if result.interrupted:
        print(
            f"stopped after {result.steps} steps (--max-steps); continue with --resume "
            f"(checkpoint {config.checkpoint})"
        )
        return 0
    meta = {
        "data": str(data),
        **data_info(data),
        "frame_step": config.frame_step,
        "train": result.summary(),
    }
    artifacts.save(model, out, metadata=meta)
    best = result.best_val_error
    score = f"best validation rollout error {best:.3e}" if best is not None else "no validation"
    print(
        f"trained {args.model} (dt = {result.dt:g}) on {data}: {result.steps} steps in "
        f"{result.wall_s:.1f} s, {score}; saved {out}"
    )
    return 0

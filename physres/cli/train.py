"""``physres train DATA.h5 --model resnet|node|implicit|hybrid --out MODEL.pt [...]``.

Data parallel: ``torchrun --standalone --nproc_per_node 2 "$(which physres)" train ...``
(rank 0 writes the model, the checkpoint and the logs).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..training.build import KINDS

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "train", help="train a learned integrator on an HDF5 trajectory file",
        description="Train a ResNet emulator, Neural ODE, implicit ResNet or hybrid "
                    "(coarse physics + learned correction) on the reference trajectories of "
                    "DATA.h5 and save it as a model file usable by `physres validate`, "
                    "physres.load and physres.rollout. The defaults train a useful model "
                    "of a small classical system on a CPU in a few minutes.")
    p.add_argument("data", metavar="DATA.h5", help="trajectory file (physres generate)")
    p.add_argument("--model", choices=KINDS, default="resnet", help="model kind (resnet)")
    p.add_argument("--out", required=True, metavar="MODEL.pt", help="model file to write")
    g = p.add_argument_group("optimisation")
    g.add_argument("--epochs", type=int, default=60)
    g.add_argument("--batch-size", type=int, default=256)
    g.add_argument("--lr", type=float, default=3e-3, help="peak learning rate of AdamW")
    g.add_argument("--weight-decay", type=float, default=1e-6)
    g.add_argument("--schedule", choices=("cosine", "constant"), default="cosine")
    g.add_argument("--warmup-steps", type=int, default=0)
    g.add_argument("--grad-clip", type=float, default=1.0, help="max gradient norm (0: off)")
    g.add_argument("--unroll", type=int, default=4,
                   help="longest unroll K of the K-step loss; K ramps 1 → K (default 4)")
    g.add_argument("--curriculum-epochs", type=int, default=None,
                   help="epochs over which K ramps (default: half of --epochs)")
    g.add_argument("--frame-step", type=int, default=1,
                   help="model step in saved steps: dt = frame_step·dt_save (default 1)")
    g.add_argument("--patience", type=int, default=20,
                   help="validations without improvement before stopping (0: never stop)")
    g.add_argument("--val-steps", type=int, default=None,
                   help="steps of the validation rollout (default: whole trajectories)")
    g.add_argument("--polish-steps", type=int, default=0,
                   help="full-batch polish iterations after the AdamW epochs (default 0)")
    g.add_argument("--polish-method", choices=("lbfgs", "lm"), default="lbfgs",
                   help="polish by L-BFGS or Levenberg–Marquardt (lm: small models, far more "
                        "accurate; fixed-grid --method for node)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--max-steps", type=int, default=None,
                   help="stop after this many optimiser steps (resume later with --resume)")
    m = p.add_argument_group("model")
    m.add_argument("--net", default="auto", help="block/field network: mlp, conv1d or auto")
    m.add_argument("--width", type=int, default=64)
    m.add_argument("--layers", type=int, default=2, help="hidden layers per network")
    m.add_argument("--depth", type=int, default=1, help="resnet: residual blocks per step")
    m.add_argument("--tie-weights", action="store_true", help="resnet: one shared block")
    m.add_argument("--stochastic-depth", type=float, default=0.0)
    m.add_argument("--form", choices=("residual", "euler"), default="residual",
                   help="resnet: x + g(x) or x + dt·f(x)")
    m.add_argument("--activation", default="tanh")
    m.add_argument("--linear-skip", action="store_true",
                   help="mlp: add a learned linear map of the input (exact for linear dynamics)")
    m.add_argument("--method", default="rk4",
                   help="node: torchdiffeq method (rk4 fixed grid; dopri5 adaptive)")
    m.add_argument("--step-size", type=float, default=None,
                   help="node: internal step of fixed-grid methods (default: dt)")
    m.add_argument("--rtol", type=float, default=1e-6, help="node: adaptive tolerance")
    m.add_argument("--atol", type=float, default=1e-8, help="node: adaptive tolerance")
    m.add_argument("--adjoint", action="store_true", help="node: adjoint gradients")
    m.add_argument("--coarse", default="rk4", help="hybrid: coarse physres stepper")
    m.add_argument("--coarse-substeps", type=int, default=1)
    m.add_argument("--dtype", choices=sorted(_DTYPES), default="float32",
                   help="network parameters' dtype")
    r = p.add_argument_group("runtime")
    r.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    r.add_argument("--checkpoint", default=None,
                   help="checkpoint path (default: MODEL.pt.ckpt)")
    r.add_argument("--checkpoint-every", type=int, default=200, help="optimiser steps")
    r.add_argument("--resume", action="store_true", help="continue from the checkpoint")
    r.add_argument("--log", default=None,
                   help="loss log prefix: writes PREFIX.csv and PREFIX.json "
                        "(default: MODEL_train)")
    r.add_argument("--num-workers", type=int, default=0, help="data loader processes")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _model_kwargs(args) -> dict:
    common = dict(net=args.net, width=args.width, layers=args.layers,
                  activation=args.activation, dtype=_DTYPES[args.dtype])
    if args.linear_skip:
        common["net_options"] = {"linear_skip": True}
    if args.model == "resnet":
        return {**common, "depth": args.depth, "tie_weights": args.tie_weights,
                "stochastic_depth": args.stochastic_depth, "form": args.form}
    if args.model == "node":
        return {**common, "method": args.method, "step_size": args.step_size,
                "rtol": args.rtol, "atol": args.atol, "adjoint": args.adjoint}
    if args.model == "hybrid":
        return {**common, "coarse": args.coarse, "coarse_substeps": args.coarse_substeps}
    return common


def run(args) -> int:
    from .. import artifacts, training
    from ..training.build import data_info, model_for

    data, out = Path(args.data), Path(args.out)
    if not data.is_file():
        raise FileNotFoundError(f"data file {str(data)!r} does not exist")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"directory of --out {str(out)!r} does not exist")
    if not os.access(out.parent, os.W_OK):
        raise PermissionError(f"cannot write --out {str(out)!r}: directory not writable")
    config = training.TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        weight_decay=args.weight_decay, schedule=args.schedule, warmup_steps=args.warmup_steps,
        grad_clip=args.grad_clip or None, unroll=args.unroll,
        curriculum_epochs=args.curriculum_epochs, frame_step=args.frame_step,
        val_steps=args.val_steps, patience=args.patience or None, seed=args.seed,
        polish_steps=args.polish_steps, polish_method=args.polish_method,
        device=args.device, checkpoint=args.checkpoint or f"{out}.ckpt",
        checkpoint_every=args.checkpoint_every, resume=args.resume,
        log=args.log or str(out.with_name(out.stem + "_train")), max_steps=args.max_steps,
        progress=not args.no_progress, num_workers=args.num_workers)
    torch.manual_seed(args.seed)
    model = model_for(data, args.model, **_model_kwargs(args))
    result = training.fit(model, data, config)
    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    if result.interrupted:
        print(f"stopped after {result.steps} steps (--max-steps); continue with --resume "
              f"(checkpoint {config.checkpoint})")
        return 0
    meta = {"data": str(data), **data_info(data), "frame_step": args.frame_step,
            "train": result.summary()}
    artifacts.save(model, out, metadata=meta)
    best = result.best_val_error
    score = f"best validation rollout error {best:.3e}" if best is not None else "no validation"
    print(f"trained {args.model} (dt = {result.dt:g}) on {data}: {result.steps} steps in "
          f"{result.wall_s:.1f} s, {score}; saved {out}")
    return 0

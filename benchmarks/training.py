"""Cost of a steady-state training step: ``physres.training.fit`` vs a plain torch loop.

Both run in this process on the same in-memory windows, model, batch order and optimiser
(AdamW, the one-step loss); the plain loop is ``zero_grad, loss, backward, step`` over batches
gathered from the same tensor. The fit run uses its defaults (gradient clipping, schedule,
history, progress bookkeeping) with the finish and early stopping off and one validation at
the end; its per-step time is measured between optimiser steps by its callback, so setup and
validation are excluded. Runs are interleaved (plain, fit, plain, fit, ...) and the ratio of the
medians is printed. Goal: ratio ≤ 1.2.

    python benchmarks/training.py [--quick] [--json benchmarks/results/training.json]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from _common import machine, table, write_json

import physres
from physres.training import TrainConfig, fit, unrolled_loss
from physres.training.data import TrainingData


def config(epochs, batch):
    return TrainConfig(
        epochs=epochs,
        batch_size=batch,
        unroll=1,
        polish_steps=0,
        patience=None,
        val_every=epochs,
        val_steps=10,
        progress=False,
        device="cpu",
    )


def model_for(width):
    torch.manual_seed(0)
    return physres.models.ResNetEmulator(state_shape=(3,), width=width, dtype=torch.float64)


def plain_loop(path, cfg, width) -> float:
    """Seconds per step of a bare loop over the same batches (steps after the first 10)."""
    data = TrainingData(path, cfg)
    model = model_for(width)
    model.set_normalization(data.normalization["mean"], data.normalization["std"])
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    stamps = []
    for epoch in range(cfg.epochs):
        for inputs, targets in data.loader(data.batches(epoch, cfg.batch_size, cfg.seed)):
            opt.zero_grad(set_to_none=True)
            loss = unrolled_loss(model, inputs, targets, data.dt, 1)
            loss.backward()
            opt.step()
            stamps.append(time.perf_counter())
    return (stamps[-1] - stamps[10]) / (len(stamps) - 11)


def fit_loop(path, cfg, width) -> float:
    stamps = []
    fit(model_for(width), path, cfg, callback=lambda step, loss: stamps.append(time.perf_counter()))
    return (stamps[-1] - stamps[10]) / (len(stamps) - 11)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", default=str(Path(__file__).parent / "results" / "training.json"))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        path = Path(workdir) / "lorenz.h5"
        physres.data.generate(
            "lorenz63",
            path,
            n_traj=16,
            t_end=10.0 if args.quick else 20.0,
            progress=False,
            workers=2,
        )
        for width, batch in ((64, 256), (256, 1024)):
            cfg = config(1 if args.quick else 2, batch)
            plain, fitted = [], []
            for _ in range(2 if args.quick else 3):
                plain.append(plain_loop(path, cfg, width))
                fitted.append(fit_loop(path, cfg, width))
            p, f = statistics.median(plain), statistics.median(fitted)
            rows.append(
                {
                    "model": f"resnet mlp width {width}",
                    "batch": batch,
                    "plain_ms_per_step": 1e3 * p,
                    "fit_ms_per_step": 1e3 * f,
                    "ratio": f / p,
                    "goal_met": f / p <= 1.2,
                }
            )
            print(table([rows[-1]], list(rows[-1])), flush=True)
    print()
    print(table(rows, list(rows[0])))
    write_json(
        args.json,
        {"benchmark": "training_step", "machine": machine(), "load": os.getloadavg(), "rows": rows},
    )


if __name__ == "__main__":
    main()

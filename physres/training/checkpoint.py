"""Training checkpoints: the model file payload plus everything needed to resume exactly."""

from __future__ import annotations

from pathlib import Path

import torch

from ..artifacts import _safe_load, atomic_torch_save, payload
from ..errors import FormatError

FORMAT = "physres-checkpoint"


def save_checkpoint(path, model, optimizer, scheduler, scaler, state: dict, config: dict) -> None:
    """Write a checkpoint atomically (:func:`physres._io.write_bytes`: normal permissions, a
    full disk is an ``OSError`` naming the file). ``state`` holds plain values (counters,
    histories, the best weights as a state dict)."""
    data = {
        "format": FORMAT,
        "model": payload(model),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None,
        "rng": torch.get_rng_state(),
        "state": state,
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in config.items()},
    }
    atomic_torch_save(data, Path(path))


def load_checkpoint(path) -> dict:
    """Read a checkpoint with the safe loader (tensors and plain values only)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist; nothing to resume")
    data = _safe_load(path, "checkpoint")
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise FormatError(f"{str(path)!r} is not a physres checkpoint")
    return data

"""Loss logs: a CSV (one row per optimiser step) and a JSON summary, written atomically."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from .._io import write_text

COLUMNS = ("step", "epoch", "unroll", "lr", "loss", "val_error")


def write_logs(prefix, history: list[dict], evaluations: list[dict], summary: dict) -> None:
    """Write ``prefix.csv`` and ``prefix.json``; ``val_error`` fills the rows where the
    validation rollout was scored."""
    prefix = Path(prefix)
    scored = {e["step"]: e["val_error"] for e in evaluations}
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(COLUMNS)
    for row in history:
        writer.writerow(
            [
                row["step"],
                row["epoch"],
                row["unroll"],
                f"{row['lr']:.6e}",
                f"{row['loss']:.9e}",
                _fmt(scored.get(row["step"])),
            ]
        )
    write_text(prefix.with_name(prefix.name + ".csv"), buf.getvalue())
    doc = {**summary, "evaluations": evaluations, "history": history}
    write_text(prefix.with_name(prefix.name + ".json"), json.dumps(doc, indent=1))


def _fmt(value) -> str:
    return "" if value is None else f"{value:.6e}"

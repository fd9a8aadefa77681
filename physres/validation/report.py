"""`Report`: metrics (JSON), a Markdown page and PNG figures, written together to a directory."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class Report:
    """The result of a validation or a comparison.

    Attributes
    ----------
    title : str
    metrics : dict
        JSON-able numbers (non-finite values are stored as ``None``); what ``report.json`` holds.
    summary : list of dict
        Rows of the closing table (terminal and Markdown).
    text : str
        Markdown body placed after the summary table.
    figures : dict
        File name (``*.png``) → ``(caption, draw)``; ``draw(path)`` writes the figure.
    """

    title: str
    metrics: dict
    summary: list = field(default_factory=list)
    text: str = ""
    figures: dict[str, tuple[str, Callable[[Path], object]]] = field(default_factory=dict)

    def __post_init__(self):
        self.metrics = finite_or_none(self.metrics)

    def table(self) -> str:
        """The summary rows as a plain text table (what the CLI prints)."""
        from ..scenarios import summary_table

        return summary_table(self.summary)

    def markdown(self) -> str:
        from ..scenarios import markdown_table

        parts = [f"# {self.title}", ""]
        if self.summary:
            parts += [markdown_table(self.summary), ""]
        if self.text:
            parts += [self.text.strip(), ""]
        if self.figures:
            parts += ["## Figures", ""]
            for name, (caption, _) in self.figures.items():
                parts += [f"**{caption}**", "", f"![{caption}]({name})", ""]
        return "\n".join(parts)

    def save(self, out) -> Path:
        """Write ``report.json``, ``report.md`` and the PNG figures under ``out`` (created).

        The JSON and Markdown files are written atomically. Returns ``out`` as a Path.
        """
        from ..scenarios import write_report

        out = Path(out)
        if out.exists() and not out.is_dir():
            raise NotADirectoryError(f"`out` must be a directory, got the file {out}")
        out.mkdir(parents=True, exist_ok=True)
        for name, (_, draw) in self.figures.items():
            draw(out / name)
        write_report(out, self.metrics, self.markdown())
        return out


def finite_or_none(obj):
    """A JSON-able copy of ``obj``: numpy/torch → Python, non-finite floats → ``None``."""
    try:
        import torch

        if isinstance(obj, torch.Tensor):
            obj = obj.detach().cpu().numpy()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(obj, np.ndarray):
        obj = obj.tolist()
    elif isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, dict):
        return {str(k): finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_none(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, complex):
        return finite_or_none([obj.real, obj.imag])
    if isinstance(obj, Path):
        return str(obj)
    return obj


def figure(nrows: int = 1, ncols: int = 1, **kwargs):
    """A matplotlib figure on the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kwargs.setdefault("figsize", (6.4 * ncols, 4.4 * nrows))
    return plt.subplots(nrows, ncols, squeeze=False, **kwargs)


def close(fig, path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)

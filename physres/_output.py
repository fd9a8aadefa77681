"""The ground floor for output: JSON, Markdown tables and PNG figures, each written atomically.

Every report, log and figure physres writes goes through here:

* :func:`jsonable` is the one converter to JSON values (numpy/torch → Python, ``Path`` → str,
  complex → ``[re, im]``); a non-finite float becomes ``None`` (``nonfinite="none"``) or is
  refused with a ``ValueError`` naming its key (``nonfinite="raise"``).
* :func:`write_json` / :func:`write_text` write through :mod:`physres._io` (atomic).
* :func:`text_table` / :func:`markdown_table` format one kind of rows (dicts, keys → columns,
  or sequences with the header first) with one cell format (:func:`cell`).
* :func:`subplots` builds a ``matplotlib.figure.Figure`` (no pyplot, no global backend) and
  :func:`save_figure` writes it as PNG through the atomic writer.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from . import _io

NONFINITE = ("none", "raise")
DPI = 120  # default resolution of the PNG figures


# ---- JSON -----------------------------------------------------------------------------------
def jsonable(obj, *, nonfinite: str = "none", where: str = "value"):
    """A JSON-able copy of ``obj``.

    numpy and torch scalars and arrays become Python numbers and lists, ``Path`` a str,
    complex numbers ``[real, imag]``, dict keys str and tuples lists. A non-finite float is
    stored as ``None`` (``nonfinite="none"``) or raises ``ValueError`` naming where it sits,
    e.g. ``report['x'][1]`` (``nonfinite="raise"``). Any other type raises ``TypeError``.
    """
    if nonfinite not in NONFINITE:
        raise ValueError(f"`nonfinite` must be one of {NONFINITE}, got {nonfinite!r}")
    return _jsonable(obj, nonfinite == "raise", where)


def _jsonable(obj, strict: bool, where: str):
    if hasattr(obj, "detach") and hasattr(obj, "cpu"):  # a torch tensor (torch not imported)
        obj = obj.detach().cpu().numpy()
    if isinstance(obj, np.ndarray):
        obj = obj.tolist()
    elif isinstance(obj, np.generic):
        obj = obj.item()
    if hasattr(obj, "to_dict") and callable(obj.to_dict):
        obj = obj.to_dict()
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v, strict, f"{where}[{k!r}]") for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v, strict, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, complex):
        return _jsonable([obj.real, obj.imag], strict, where)
    if isinstance(obj, float) and not math.isfinite(obj):
        if strict:
            raise ValueError(
                f"`{where.split('[')[0]}`: {where} is {obj}; reports hold finite "
                "numbers (use None for a value that is not available)"
            )
        return None
    if isinstance(obj, Path):
        return str(obj)
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(
        f"`{where.split('[')[0]}`: {where} has type {type(obj).__name__}, which is not JSON-able"
    )


def dumps(obj, *, nonfinite: str = "none", where: str = "value", indent: int | None = 2) -> str:
    """``obj`` as JSON text (see :func:`jsonable`); never writes ``NaN``/``Infinity``."""
    return json.dumps(
        jsonable(obj, nonfinite=nonfinite, where=where), indent=indent, allow_nan=False
    )


def write_json(
    path, obj, *, nonfinite: str = "none", where: str = "value", indent: int | None = 2
) -> Path:
    """Write ``obj`` as JSON (with a final newline) to ``path`` atomically; returns the path.

    The conversion happens before anything is written, so a refused value leaves the old
    file intact."""
    return write_text(path, dumps(obj, nonfinite=nonfinite, where=where, indent=indent))


def write_text(path, text: str) -> Path:
    """Write ``text`` (given a final newline) to ``path`` atomically; returns the path."""
    if not isinstance(text, str):
        raise TypeError(f"`text` must be a str, got {type(text).__name__}")
    return _io.write_text(path, text if text.endswith("\n") else text + "\n")


# ---- tables ---------------------------------------------------------------------------------
def cell(v) -> str:
    """One table cell: floats with 4 significant digits, ``None`` as an em dash."""
    if v is None:
        return "—"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, (float, np.floating)):
        return f"{v:.4g}"
    return str(v)


def table_cells(rows) -> tuple[list[str], list[list[str]]]:
    """``(header, body)`` of cells from dicts (keys → columns, in first-seen order) or from
    sequences (the first one is the header)."""
    rows = list(rows)
    if not rows:
        return [], []
    if isinstance(rows[0], Mapping):
        header: list[str] = []
        for r in rows:
            header += [str(k) for k in r if str(k) not in header]
        rows = [{str(k): v for k, v in r.items()} for r in rows]
        return header, [[cell(r.get(h)) for h in header] for r in rows]
    if isinstance(rows[0], Sequence) and not isinstance(rows[0], str):
        return [str(h) for h in rows[0]], [[cell(v) for v in r] for r in rows[1:]]
    raise TypeError(
        f"`rows` must be dicts or sequences (first one the header), got {type(rows[0]).__name__}"
    )


def text_table(rows) -> str:
    """A plain aligned text table (what the terminal shows); ``"(no rows)"`` when empty."""
    header, body = table_cells(rows)
    if not header:
        return "(no rows)"
    widths = [
        max(len(r[i]) if i < len(r) else 0 for r in [header, *body]) for i in range(len(header))
    ]

    def line(cells):
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, body)])


def markdown_table(rows) -> str:
    """The same rows as a Markdown (GitHub) table; ``""`` when empty."""
    header, body = table_cells(rows)
    if not header:
        return ""
    header = [h.replace("|", "\\|") for h in header]
    body = [[c.replace("|", "\\|") for c in r] for r in body]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    return "\n".join(lines)


# ---- figures --------------------------------------------------------------------------------
_FIGURE_KEYS = (
    "figsize",
    "dpi",
    "facecolor",
    "edgecolor",
    "linewidth",
    "frameon",
    "layout",
    "constrained_layout",
    "tight_layout",
)


def subplots(nrows: int = 1, ncols: int = 1, *, squeeze: bool = True, **kwargs):
    """``(fig, axes)`` like ``pyplot.subplots``, on a bare ``matplotlib.figure.Figure``
    (no pyplot state, no backend switch). ``figsize``, ``dpi``, ... go to the figure, the rest
    (``sharex``, ``sharey``, ``subplot_kw``, ``gridspec_kw``, ...) to ``Figure.subplots``."""
    from matplotlib.figure import Figure

    fig = Figure(**{k: kwargs.pop(k) for k in _FIGURE_KEYS if k in kwargs})
    return fig, fig.subplots(nrows, ncols, squeeze=squeeze, **kwargs)


def png_bytes(fig, dpi: int = DPI, layout: bool = True) -> bytes:
    """``fig`` rendered as PNG (after ``tight_layout`` when ``layout``)."""
    if layout:
        fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=dpi, format="png")
    return buffer.getvalue()


def save_figure(fig, path, dpi: int = DPI, layout: bool = True) -> Path:
    """Write ``fig`` as PNG to ``path`` atomically; returns the path."""
    return _io.write_bytes(path, png_bytes(fig, dpi=dpi, layout=layout))


class PyplotLike:
    """The part of ``matplotlib.pyplot`` scenario figures use (``subplots``, ``figure``,
    ``close``, ``rcParams``), on bare figures: nothing global is touched."""

    subplots = staticmethod(subplots)

    @staticmethod
    def figure(**kwargs):
        from matplotlib.figure import Figure

        return Figure(**kwargs)

    @staticmethod
    def close(fig=None) -> None:
        """Nothing to release: a bare figure is freed with its last reference."""

    @property
    def rcParams(self):  # noqa: N802 - pyplot's name
        import matplotlib

        return matplotlib.rcParams

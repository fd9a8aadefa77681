"""`Report`: metrics (JSON), a Markdown page and PNG figures, written together to a directory."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .. import _output


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
        self.metrics = _output.jsonable(self.metrics, where="metrics")

    def table(self) -> str:
        """The summary rows as a plain text table (what the CLI prints)."""
        return _output.text_table(self.summary)

    def markdown(self) -> str:
        parts = [f"# {self.title}", ""]
        if self.summary:
            parts += [_output.markdown_table(self.summary), ""]
        if self.text:
            parts += [self.text.strip(), ""]
        if self.figures:
            parts += ["## Figures", ""]
            for name, (caption, _) in self.figures.items():
                parts += [f"**{caption}**", "", f"![{caption}]({name})", ""]
        return "\n".join(parts)

    def save(self, out) -> Path:
        """Write ``report.json``, ``report.md`` and the PNG figures under ``out`` (created).

        Every file is written atomically (:mod:`physres._output`). Returns ``out`` as a Path.
        """
        out = Path(out)
        if out.exists() and not out.is_dir():
            raise NotADirectoryError(f"`out` must be a directory, got the file {out}")
        out.mkdir(parents=True, exist_ok=True)
        for name, (_, draw) in self.figures.items():
            draw(out / name)
        _output.write_json(out / "report.json", self.metrics, nonfinite="raise", where="metrics")
        _output.write_text(out / "report.md", self.markdown())
        return out

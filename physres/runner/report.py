"""A scenario's report: the header every report carries, ``report.json`` and ``report.md``
written atomically, and the closing text the terminal shows."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from .. import _output
from .._version import __version__

HEADER = (
    "scenario",
    "quick",
    "preset",
    "device",
    "physres",
    "config",
    "config_overrides",
    "placement",
    "wall_s",
    "phase_s",
)


def header(name: str, preset: str, device: str, config: dict, overrides: dict | None) -> dict:
    """The report's first keys: what ran, how, and with which physres."""
    head = {
        "scenario": name,
        "quick": preset == "quick",
        "preset": preset,
        "device": device,
        "physres": __version__,
        "config": config,
    }
    if overrides:
        head["config_overrides"] = dict(overrides)
    return head


def header_markdown(report: Mapping) -> str:
    """The run's line and its config, placed under the title of ``report.md``."""
    preset = report["preset"] + (" (`--quick`)" if report["quick"] else "")
    lines = [
        _output.markdown_table(
            [
                {
                    "scenario": f"`{report['scenario']}`",
                    "preset": preset,
                    "device": f"`{report['device']}`",
                    "physres": report["physres"],
                    "wall time": f"{report['wall_s']:.0f} s",
                }
            ]
        ),
        "",
    ]
    config = ", ".join(f"`{k}` = {v!r}" for k, v in report["config"].items())
    lines.append(f"Config: {config}.")
    overrides = report.get("config_overrides")
    if overrides:
        lines.append(
            f"Changed from the {report['preset']} preset by `--config`: "
            + ", ".join(f"`{k}`" for k in overrides)
            + "."
        )
    return "\n".join(lines)


def compose_markdown(report: Mapping, body: str) -> str:
    """``body``'s title line, the header, then the rest of ``body``."""
    if not isinstance(body, str):
        raise TypeError(
            f"`body` (the Markdown a scenario returns) must be a str, got {type(body).__name__}"
        )
    first, _, rest = body.lstrip("\n").partition("\n")
    if not first.startswith("# "):
        first, rest = f"# {report['scenario']}", body
    return "\n".join([first, "", header_markdown(report), "", rest.lstrip("\n")])


def write_report(out, report: Mapping, markdown: str) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.md`` under ``out``, each atomically.

    Numpy and torch scalars/arrays are converted; a non-finite number raises ``ValueError``
    naming its key (store ``None`` for "not available"). Nothing is written when the report
    is refused. Returns the two paths.
    """
    if not isinstance(markdown, str):
        raise TypeError(f"`markdown` must be a str, got {type(markdown).__name__}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    text = _output.dumps(report, nonfinite="raise", where="report")
    json_path, md_path = out / "report.json", out / "report.md"
    _output.write_text(json_path, text)
    _output.write_text(md_path, markdown)
    return json_path, md_path


def savefig(fig, path, dpi: int = 110) -> str:
    """Lay out, write ``fig`` as PNG at ``path`` (atomically); returns the file name."""
    _output.save_figure(fig, path, dpi=dpi)
    return Path(path).name


def closing_text(report: Mapping, out) -> str:
    """The summary table, then where the report and the figures are."""
    out = Path(out)
    rows = report.get("summary")
    if not rows:
        rows = [
            {"metric": k, "value": v} for k, v in _leaves(report) if k.split(".")[0] not in HEADER
        ][:30]
    figures = sorted(p.name for p in out.glob("*.png"))
    lines = [_output.text_table(rows), ""]
    if (out / "report.md").exists():
        lines.append(f"report   {out / 'report.md'}  (machine-readable: report.json)")
    if figures:
        lines.append(f"figures  {out}/ ({len(figures)} PNG: {', '.join(figures)})")
    return "\n".join(lines)


def _leaves(obj, prefix=""):
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            yield from _leaves(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(obj, (int, float, str, bool)) or obj is None:
        yield prefix, obj

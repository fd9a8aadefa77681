"""The Python code blocks of README.md and docs/**/*.md run as written.

Blocks of one page run in order in one namespace (later blocks use earlier names), in a
temporary working directory. A block preceded by the line ``<!-- skip-test -->`` is skipped
(for long runs); blocks in other languages (```bash, plain ```) are not Python.
"""

import re
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
SKIP = "<!-- skip-test -->"
FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)


def _pages() -> list[Path]:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    return [p for p in pages if p.is_file()]


def python_blocks(text: str) -> list[tuple[int, str, bool]]:
    """(line number, code, skipped) of each ```python block."""
    blocks = []
    for m in FENCE.finditer(text):
        before = text[: m.start()].rstrip().splitlines()
        skipped = bool(before) and before[-1].strip() == SKIP
        blocks.append((text.count("\n", 0, m.start()) + 1, m.group(1), skipped))
    return blocks


PAGES = [p for p in _pages() if any(not s for _, _, s in python_blocks(p.read_text()))]


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_page_examples_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.set_default_dtype(torch.float32)  # what a user's fresh session has
    namespace = {"__name__": "__docs__"}
    for line, code, skipped in python_blocks(page.read_text()):
        if skipped:
            continue
        try:
            exec(compile(code, f"{page.name}:{line}", "exec"), namespace)
        except Exception as exc:
            raise AssertionError(
                f"{page.relative_to(ROOT)}, block at line {line} failed: "
                f"{type(exc).__name__}: {exc}"
            ) from exc


def test_skip_marker_is_recognised():
    text = "a\n\n<!-- skip-test -->\n```python\nraise SystemExit\n```\n```python\nx = 1\n```\n"
    assert [(s, c) for _, c, s in python_blocks(text)] == [
        (True, "raise SystemExit\n"),
        (False, "x = 1\n"),
    ]

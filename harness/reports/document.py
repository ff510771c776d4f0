"""A report as data: titled sections of paragraphs, tables and figures, rendered to Markdown or HTML.

Builders (`harness.reports.build`) decide *what* a report says; renderers (`markdown.py`, `html.py`) only decide
how it looks, so both formats always carry the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Table:
    """Cells are plain text; a cell wrapped in ``**`` is emphasised (the best value of a column).

    A newline in a cell or header starts a new line in HTML (a value over its interval, a title over its sample
    size), which keeps wide tables narrow; Markdown tables cannot break lines and join the lines with a space.
    """

    headers: list[str]
    rows: list[list[str]]
    align: str | None = None  # one "l" / "r" per column (default: first left, the rest right)
    caption: str | None = None
    sortable: bool = True


@dataclass
class Figure:
    path: Path  # a PNG written next to the report
    caption: str


Block = Table | Figure | str  # a str is a paragraph (may contain Markdown emphasis, links and `code`)


@dataclass
class Section:
    title: str
    blocks: list[Block] = field(default_factory=list)
    level: int = 2  # 2 = "##"
    anchor: str | None = None


@dataclass
class ReportDoc:
    title: str
    intro: list[str] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)

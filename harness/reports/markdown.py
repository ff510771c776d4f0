"""Render a ReportDoc as GitHub Markdown (figures as relative image links next to the report)."""

from __future__ import annotations

import os
from pathlib import Path

from harness.reports.document import Figure, ReportDoc, Section, Table
from harness.reports.tables import markdown_table


def _table(table: Table) -> str:
    text = markdown_table(table.headers, table.rows, align=table.align)
    return f"{table.caption}\n\n{text}" if table.caption else text


def _figure(figure: Figure, relative_to: Path | None) -> str:
    path = figure.path
    if relative_to is not None:
        path = Path(os.path.relpath(figure.path, relative_to))
    return f"![{figure.caption}]({path.as_posix()})"


def _section(section: Section, relative_to: Path | None) -> list[str]:
    parts = [f"{'#' * section.level} {section.title}", ""]
    for block in section.blocks:
        if isinstance(block, Table):
            parts += [_table(block), ""]
        elif isinstance(block, Figure):
            parts += [_figure(block, relative_to), ""]
        else:
            parts += [block, ""]
    return parts


def render_markdown(doc: ReportDoc, *, relative_to: Path | None = None, with_title: bool = True) -> str:
    """Markdown text; image links are relative to `relative_to` (the report's folder) when given."""
    parts: list[str] = []
    if with_title:
        parts += [f"# {doc.title}", ""]
    for paragraph in doc.intro:
        parts += [paragraph, ""]
    for section in doc.sections:
        parts += _section(section, relative_to)
    return "\n".join(parts).rstrip() + "\n"

"""Write a built report in the chosen formats (Markdown, self-contained HTML, CSV / parquet of the tidy table)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from harness.reports.build import ReportOptions, build_report
from harness.reports.markdown import render_markdown
from harness.results.schema import read_result


def write_report(files: Sequence[Path], out: Path | None, *, formats: Sequence[str], reference: str | None,
                 gpu_price_per_hour: float | None, bootstrap: int, seed: int, title: str,
                 include_paths: Sequence[str] = ()) -> tuple[list[Path], str]:
    """(files written, Markdown text). `out` is the report path without extension; figures go to <out>-files/.
    `include_paths`: task files (as `bench run --include-path`) that give titles and chance to result files
    older than schema 1.3."""
    results = [(read_result(f), f) for f in files]
    if out is not None and out.suffix in (".md", ".html", ".csv", ".parquet"):
        out = out.with_suffix("")
    figures_dir = None if out is None else out.parent / f"{out.name}-files"
    built = build_report(results, ReportOptions(title=title, reference=reference, gpu_price_per_hour=gpu_price_per_hour,
                                                bootstrap=bootstrap, seed=seed, figures_dir=figures_dir,
                                                include_paths=tuple(include_paths)))
    text = render_markdown(built.doc, relative_to=out.parent if out is not None else None)
    if out is None:
        return [], text
    out.parent.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    if "md" in formats:
        path = out.with_suffix(".md")
        path.write_text(text, encoding="utf-8")
        written.append(path)
    if "html" in formats:
        from harness.reports.html import render_html

        path = out.with_suffix(".html")
        path.write_text(render_html(built.doc), encoding="utf-8")
        written.append(path)
    if "csv" in formats:
        path = out.with_suffix(".csv")
        built.tidy.to_csv(path, index=False)
        written.append(path)
    if "parquet" in formats:
        path = out.with_suffix(".parquet")
        built.tidy.to_parquet(path, index=False)
        written.append(path)
    return written, text

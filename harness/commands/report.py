"""`bench report`: comparison report of result files."""

from __future__ import annotations

from pathlib import Path

import click

from harness.commands.common import include_path_option, one_line_errors, parse_csv


@click.command("report")
@click.argument("results", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Report path without extension (reports/NAME): writes NAME.md / .html / .csv and NAME-files/. "
              "Without --out the Markdown goes to stdout (no figures).")
@click.option("--format", "formats", default="md,html,csv", show_default=True,
              help="Comma-separated: md, html, csv, parquet.")
@click.option("--reference", default="seed", show_default=True, help="Published reference block: seed, or none.")
@click.option("--gpu-price", type=float, default=None, help="US$ per GPU-hour: the Pareto chart then shows accuracy "
              "vs examples per dollar.")
@click.option("--bootstrap", type=int, default=2000, show_default=True, help="Paired-bootstrap resamples.")
@click.option("--seed", type=int, default=0, show_default=True, help="Bootstrap seed.")
@click.option("--title", default="statement-bench report", show_default=True)
@include_path_option
@one_line_errors
def report_cmd(results: tuple[Path, ...], out: Path | None, formats: str, reference: str, gpu_price: float | None,
               bootstrap: int, seed: int, title: str, include_paths: tuple[str, ...]) -> None:
    """Comparison report of result files (or directories holding them): tables, plots, significance."""
    from harness.errors import DataError, UsageError
    from harness.reports.writer import write_report
    from harness.results.schema import find_result_files

    chosen = parse_csv(formats) or ()
    unknown = [f for f in chosen if f not in ("md", "html", "csv", "parquet")]
    if unknown or not chosen:
        raise UsageError(f"--format {formats!r}: choose from md, html, csv, parquet")
    if gpu_price is not None and gpu_price <= 0:
        raise UsageError(f"--gpu-price must be positive (got {gpu_price:g})")
    if bootstrap < 1:
        raise UsageError(f"--bootstrap must be at least 1 (got {bootstrap})")
    files = find_result_files(list(results))
    if not files:
        raise DataError(f"no result.json found under {', '.join(map(str, results))}")
    written, text = write_report(files, out, formats=chosen, reference=None if reference == "none" else reference,
                                 gpu_price_per_hour=gpu_price, bootstrap=bootstrap, seed=seed, title=title,
                                 include_paths=include_paths)
    if out is None:
        click.echo(text)
    for path in written:
        click.echo(f"report: {path}", err=True)

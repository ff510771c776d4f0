"""The `bench` command line: the `main` group, assembled from one module per command in `harness.commands`.

Errors from bad input become one line and an exit code, never a traceback (`harness.commands.common`)."""

from __future__ import annotations

import sys

import click

from harness.commands import compare, efficiency, listing, report, reproduce, run, task, train
from harness.commands.common import BenchFailure, failure, one_line_errors

__all__ = ["BenchFailure", "failure", "main", "one_line_errors"]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="statement-bench", prog_name="bench")
def main() -> None:
    """statement-bench: zero-shot multilingual evaluation of statement-tuned encoders and LLMs."""


for _command in (run.run_cmd, efficiency.efficiency_cmd, listing.list_group, task.task_group, report.report_cmd,
                 compare.compare_cmd, train.train_cmd, train.statements_cmd, reproduce.reproduce_cmd):
    main.add_command(_command)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""What every `bench` command shares: one-line errors with exit codes, Ctrl-C handling, option parsing and the
options several commands declare alike."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import click

from harness.errors import BenchError, one_line

F = TypeVar("F", bound=Callable[..., Any])
ALL = "all"
INTERRUPTED_EXIT_CODE = 130


class BenchFailure(click.ClickException):
    """Shown as `error: <one line>`; `failure()` makes one with the BenchError's exit code."""

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


def failure(message: str, exit_code: int) -> BenchFailure:
    # click reads `exit_code` from the class; a subclass per code keeps it typed.
    cls = type(f"BenchFailure{exit_code}", (BenchFailure,), {"exit_code": exit_code})
    return cls(message)


def one_line_errors(fn: F) -> F:
    """A command callback whose BenchError becomes `error: <first line>` and the error's exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except BenchError as err:
            raise failure(one_line(err, limit=100_000), err.exit_code) from err
    return wrapper  # type: ignore[return-value]


@contextlib.contextmanager
def resumable(kept: str, then: str = "resume") -> Iterator[None]:
    """Ctrl-C inside the block: `error: interrupted; <kept> — re-run the same command to <then>`, exit 130."""
    try:
        yield
    except KeyboardInterrupt:
        raise failure(f"interrupted; {kept} — re-run the same command to {then}", INTERRUPTED_EXIT_CODE) from None


def parse_csv(value: str | None) -> tuple[str, ...] | None:
    """Comma-separated items; None for no value, 'all' or nothing but commas and blanks."""
    if value is None or value.strip().lower() == ALL:
        return None
    items = tuple(v.strip() for v in value.split(",") if v.strip())
    return items or None


def parse_key_values(items: tuple[str, ...], option: str) -> tuple[tuple[str, str], ...]:
    """NAME=VALUE items of a repeatable option (the last of a NAME wins); exit 2 on a malformed one."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise failure(f"{option} {item!r}: write NAME=VALUE", 2)
        out[key.strip()] = value.strip()
    return tuple(out.items())


include_path_option = click.option(
    "--include-path", "include_paths", multiple=True, metavar="DIR",
    help="Directory (searched recursively) or file of your own task files (repeatable).")

langs_option = click.option("--langs", default=ALL, show_default=True, help="Comma-separated languages, or 'all'.")


def torch_options(*, dtype_help: str, device_help: str | None, threads_help: str) -> Callable[[F], F]:
    """`--dtype`, `--device`, `--threads` (in that order), with each command's own help text."""
    options = [
        click.option("--dtype", default="auto", show_default=True, help=dtype_help),
        click.option("--device", default="auto", show_default=True, help=device_help),
        click.option("--threads", type=int, default=None, help=threads_help),
    ]

    def decorate(fn: F) -> F:
        for option in reversed(options):
            fn = option(fn)
        return fn
    return decorate

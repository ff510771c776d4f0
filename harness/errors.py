"""Errors the CLI turns into a one-line message and an exit code (never a traceback)."""

from __future__ import annotations


class BenchError(Exception):
    """Base class: `str(err)` is the one-line message shown to the user."""

    exit_code = 1


class UsageError(BenchError):
    """Unknown task / language / backend / option value."""

    exit_code = 2


class DataError(BenchError):
    """A data file is missing, corrupt (checksum mismatch) or malformed (bad label, no candidates)."""

    exit_code = 3


class ModelError(BenchError):
    """A model path, preset or adapter cannot be loaded."""

    exit_code = 4


class ScoreError(BenchError):
    """A backend returned unusable scores (NaN, wrong count)."""

    exit_code = 5


def one_line(err: BaseException, limit: int = 240, *, join_lines: bool = False) -> str:
    """First non-empty line of an exception message (or, with ``join_lines``, all of it with whitespace runs
    collapsed: parser errors put the useful part on later lines), cut to ``limit``; error messages are one line."""
    text = str(err).strip()
    if join_lines:
        line = " ".join(text.split()) or type(err).__name__
    else:
        line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "") or type(err).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."

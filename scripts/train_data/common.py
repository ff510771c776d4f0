"""Interface shared by the source converters (``group_a``, ``group_b``) and ``scripts/package_train_data.py``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.languages import FLORES_TO_ISO, TRAINING_LANGUAGES

__all__ = ["FLORES_TO_ISO", "SHARED_DEFAULT", "TARGET_LANGS", "SourceError", "SourceInfo", "fail", "read_text"]

#: the raw data checkout (``<repo>/../shared/data``); only dev scripts read it, never the product
SHARED_DEFAULT = Path(__file__).resolve().parents[2].parent / "shared" / "data"

#: the 25 target languages (ISO 639-1 codes), from the package's one language registry
TARGET_LANGS: tuple[str, ...] = TRAINING_LANGUAGES


@dataclass(frozen=True)
class SourceInfo:
    """One training source: its metadata and a converter ``shared_data_dir -> {lang: rows}``."""

    name: str  # folder-like name: "sib200", "flores200", ...
    task_type: str  # a key of harness.training.rows.ROW_FIELDS
    license: str  # e.g. "CC BY-SA 4.0"; "none stated" where so
    provenance: str  # "owner/repo @ commit" (from SOURCE.md)
    note: str  # caveats that matter to users (script, splits used, derived fields, non-commercial)
    # upstream licence texts to copy (may be empty), RELATIVE to the shared data dir, e.g. Path("train/xsid/LICENSE")
    license_files: tuple[Path, ...]
    # shared_data_dir -> {lang: rows (all usable rows, in a deterministic order)}
    convert: Callable[[Path], dict[str, list[dict[str, Any]]]]
    non_commercial: bool = False


class SourceError(Exception):
    """A raw source file is missing or malformed; the message names the file."""


def fail(msg: str) -> None:
    """Stop the packaging with a message that names the file (and row) at fault."""
    raise SourceError(msg)




def parse_jsonl(text: str, where: str) -> list[dict[str, Any]]:
    """Rows of a raw JSON Lines text, read by the package's own parser (`harness.packaged.parse_jsonl_text`);
    a bad line is a SourceError naming the file and line."""
    from harness.errors import DataError
    from harness.packaged import parse_jsonl_text

    try:
        return parse_jsonl_text(Path(where), text, "check the raw source file")
    except DataError as exc:
        raise SourceError(str(exc)) from None


def read_text(path: Path) -> str:
    """The UTF-8 text of a raw file (SourceError naming the file if it is missing or not UTF-8)."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SourceError(f"{path}: missing") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SourceError(f"{path}: unreadable ({exc})") from None

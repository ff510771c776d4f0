"""The packaged Statement-Tuning training sources: normalised rows per source and language.

The data lives in ``harness/training/data`` (written by ``scripts/package_train_data.py``): one gzip-compressed
JSON Lines file per source and language, in the row contract of :mod:`harness.training.rows`, listed with its
sha256 and row count in ``manifest.json``. Nothing outside the installed package is read at run time (the
environment variable ``BENCH_TRAIN_DATA_DIR`` points elsewhere, for tests). Every file is checked against its
sha256 before it is parsed.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import DataError, UsageError
from harness.packaged import read_manifest, verified_rows
from harness.training.rows import ROW_FIELDS, check_row

DATA_DIR = Path(__file__).resolve().parent / "data"
ENV_DATA_DIR = "BENCH_TRAIN_DATA_DIR"
MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1
REINSTALL = "the packaged training data is corrupt, reinstall statement-bench"


@dataclass(frozen=True)
class TrainSource:
    name: str
    task_type: str
    license: str
    provenance: str
    note: str
    non_commercial: bool
    languages: tuple[str, ...]
    rows: dict[str, int]  # language -> packaged rows


def data_dir() -> Path:
    """The packaged training data directory (``BENCH_TRAIN_DATA_DIR`` overrides :data:`DATA_DIR`)."""
    env = os.environ.get(ENV_DATA_DIR)
    return Path(env) if env else DATA_DIR



# ----------------------------------------------------------------------------------------------- manifest

def _manifest() -> dict[str, Any]:
    path = data_dir() / MANIFEST_NAME
    man = read_manifest(path, what="training data", reinstall=REINSTALL, format_version=FORMAT_VERSION,
                        top_key="sources")
    for name, info in man["sources"].items():
        try:
            langs = info["languages"]
            ok = (info["task_type"] in ROW_FIELDS and isinstance(langs, dict) and langs
                  and all(isinstance(e, dict) and {"file", "sha256", "rows"} <= set(e) for e in langs.values()))
        except (KeyError, TypeError):
            ok = False
        if not ok:
            raise DataError(f"{path}: malformed entry for training source {name!r}; {REINSTALL}")
    return man


def _source(name: str, info: dict[str, Any]) -> TrainSource:
    langs = info["languages"]
    return TrainSource(
        name=name, task_type=str(info["task_type"]), license=str(info.get("license", "")),
        provenance=str(info.get("provenance", "")), note=str(info.get("note", "")),
        non_commercial=bool(info.get("non_commercial", False)), languages=tuple(sorted(langs)),
        rows={lang: int(langs[lang]["rows"]) for lang in sorted(langs)},
    )


def list_sources() -> list[TrainSource]:
    """Every packaged training source, sorted by name."""
    man = _manifest()
    return [_source(name, man["sources"][name]) for name in sorted(man["sources"])]


def get_source(name: str) -> TrainSource:
    """The packaged source ``name`` (UsageError naming it and listing the known sources if there is none)."""
    man = _manifest()
    info = man["sources"].get(name)
    if info is None:
        known = ", ".join(sorted(man["sources"]))
        raise UsageError(f"unknown training source {name!r}; known sources: {known}")
    return _source(name, info)


def sources_for(task_type: str) -> list[TrainSource]:
    """The packaged sources of one task type (a key of ``harness.training.rows.ROW_FIELDS``), sorted by name."""
    if task_type not in ROW_FIELDS:
        raise UsageError(f"unknown training task type {task_type!r}; known: {', '.join(ROW_FIELDS)}")
    return [s for s in list_sources() if s.task_type == task_type]


def _entry(source: str, language: str) -> tuple[TrainSource, dict[str, Any]]:
    src = get_source(source)
    if language not in src.languages:
        raise UsageError(f"training source {source!r} has no language {language!r}; it has: "
                         f"{', '.join(src.languages)}")
    return src, _manifest()["sources"][source]["languages"][language]


# ------------------------------------------------------------------------------------------------- rows

def load_rows(source: str, language: str) -> list[dict[str, Any]]:
    """The packaged rows of ``source`` in ``language`` (fresh copies: callers may change them).

    UsageError if the source or language is unknown; DataError naming the file if it is missing, corrupt or
    does not match its manifest sha256.
    """
    src, entry = _entry(source, language)
    return verified_rows(data_dir() / str(entry["file"]), str(entry["sha256"]), int(entry["rows"]),
                         what="training data", reinstall=REINSTALL,
                         check=lambda row, n: check_row(src.task_type, row, f"line {n}"))


def data_checksums(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """``"source/lang"`` -> the sha256 of its packaged file (from the manifest), for result provenance."""
    out: dict[str, str] = {}
    for source, language in pairs:
        _, entry = _entry(source, language)
        out[f"{source}/{language}"] = str(entry["sha256"])
    return dict(sorted(out.items()))

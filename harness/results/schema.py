"""The run result file (schema-versioned JSON): what was run, on what, and the metrics per task x language."""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import DataError

#: 1.1: optional acc_norm (causal LMs); 1.2: optional efficiency record; 1.3: task title, chance and task file;
#: readers accept 1.x
SCHEMA_VERSION = "1.3"
RESULT_FILE = "result.json"
SAMPLES_FILE = "samples.jsonl"


@dataclass
class LanguageResult:
    language: str
    n: int  # examples scored
    n_rows: int  # rows in the split (before --limit)
    accuracy: float
    stderr: float
    ci95_low: float
    ci95_high: float
    truncated: int  # statements cut to the model's input limit
    data_source: str
    data_location: str
    data_sha256: str | None
    data_derived: bool
    acc_norm: float | None = None  # lm-eval's length-normalised accuracy (causal LMs)
    acc_norm_stderr: float | None = None


@dataclass
class TaskResult:
    task: str
    split: str
    metric: str
    languages: dict[str, LanguageResult]
    mean_accuracy: float  # unweighted mean over languages
    mean_stderr: float
    mean_ci95_low: float
    mean_ci95_high: float
    n_languages: int
    n_examples: int
    templates: dict[str, Any] = field(default_factory=dict)  # path, version, sha256
    prompt: str = "statements"  # request format: statements (verbalizer templates) or lm-eval-0.4.13
    mean_acc_norm: float | None = None
    mean_acc_norm_ci95_low: float | None = None
    mean_acc_norm_ci95_high: float | None = None
    title: str | None = None  # the task file's display name (1.3)
    chance: float | None = None  # chance accuracy (%) from the number of candidates (1.3)
    task_file: dict[str, Any] | None = None  # path and sha256 of the task file (1.3)
    #: `--templates all` only: accuracy per template, mean and spread (harness.results.sensitivity); additive, 1.3
    template_sensitivity: dict[str, Any] | None = None


@dataclass
class RunResult:
    schema_version: str
    run_id: str
    config: dict[str, Any]
    model: dict[str, Any]
    environment: dict[str, Any]
    tasks: dict[str, TaskResult]
    samples_file: str
    timing: dict[str, Any] = field(default_factory=dict)  # the only part that differs between equal runs
    efficiency: dict[str, Any] | None = None  # `bench efficiency` record (then `tasks` is empty, no samples file)


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan_to_none(v) for v in value]
    return value


def result_to_dict(result: RunResult) -> dict[str, Any]:
    return dict(_nan_to_none(asdict(result)))


def _none_to_nan(value: Any) -> float:
    return math.nan if value is None else float(value)



def result_from_dict(d: dict[str, Any], where: str = "result") -> RunResult:
    version = d.get("schema_version")
    if not isinstance(version, str) or version.split(".")[0] != SCHEMA_VERSION.split(".")[0]:
        raise DataError(f"{where}: schema_version {version!r} is not supported (this bench reads {SCHEMA_VERSION})")
    try:
        tasks: dict[str, TaskResult] = {}
        for name, t in d["tasks"].items():
            langs = {}
            for lang, lr in t["languages"].items():
                for key in ("accuracy", "stderr", "ci95_low", "ci95_high"):
                    lr[key] = _none_to_nan(lr[key])
                langs[lang] = LanguageResult(**lr)
            for key in ("mean_accuracy", "mean_stderr", "mean_ci95_low", "mean_ci95_high"):
                t[key] = _none_to_nan(t[key])
            tasks[name] = TaskResult(**{**t, "languages": langs})
        return RunResult(schema_version=version, run_id=d["run_id"], config=d["config"], model=d["model"],
                         environment=d["environment"], tasks=tasks, samples_file=d["samples_file"],
                         timing=d.get("timing", {}), efficiency=d.get("efficiency"))
    except (KeyError, TypeError, AttributeError) as err:
        raise DataError(f"{where}: not a statement-bench result file ({type(err).__name__}: {err})") from err


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    """Write to a temp file in the same directory, fsync, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(payload, fh, ensure_ascii=False, indent=2)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; a result file is as readable as any other
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_result(path: Path, result: RunResult) -> None:
    write_json_atomic(path, result_to_dict(result))


def read_json_object(path: Path, what: str) -> dict[str, Any]:
    """A JSON object from a file, or a one-line DataError naming the file (unreadable, not JSON, not an
    object: then "not a <what>")."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise DataError(f"{path}: cannot read ({err.strerror})") from err
    except ValueError as err:
        raise DataError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(doc, dict):
        raise DataError(f"{path}: not a {what}")
    return doc


def read_result(path: Path) -> RunResult:
    return result_from_dict(read_json_object(path, "statement-bench result file"), where=str(path))


def find_result_files(paths: list[Path]) -> list[Path]:
    """Expand directories (recursively) into result.json files; keep explicit files as given."""
    found: list[Path] = []
    for p in paths:
        if p.is_dir():
            found.extend(sorted(p.rglob(RESULT_FILE)))
        elif p.exists():
            found.append(p)
        else:
            raise DataError(f"{p}: no such result file or directory")
    return found

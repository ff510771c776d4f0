"""Rows of a task/language/split, from the packaged data (default) or from the Hugging Face Hub.

The packaged data lives in ``harness/tasks/data`` (written by ``scripts/package_data.py``): gzip-compressed
JSON Lines in the Hugging Face schema of each task, listed with their sha256 and row count in
``manifest.json``. Nothing outside the installed package is read at run time. Every file is checked against
its sha256 before it is parsed.

The Hub path (``source="hub"``) reads the same task through ``datasets.load_dataset`` (or a local mirror laid
out by repo id) and normalises the rows to the packaged schema.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import DataError, UsageError, one_line
from harness.tasks.specs import TASKS, check_language, check_split, get_task

#: an exception as one line, whole (parser errors carry the detail on later lines)
_reason = functools.partial(one_line, limit=400, join_lines=True)

ENV_DATA_DIR = "BENCH_DATA_DIR"
MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1
SOURCES = ("packaged", "hub")
REINSTALL = "the packaged data is corrupt, reinstall statement-bench"

# Field -> type of the packaged rows (= the Hub schema of each task), in the packaged key order.
SCHEMAS: dict[str, dict[str, type]] = {
    "xcopa": {"premise": str, "choice1": str, "choice2": str, "question": str, "label": int, "idx": int,
              "changed": bool},
    "xnli": {"premise": str, "hypothesis": str, "label": int},
    "xstorycloze": {"story_id": str, "input_sentence_1": str, "input_sentence_2": str,
                    "input_sentence_3": str, "input_sentence_4": str, "sentence_quiz1": str,
                    "sentence_quiz2": str, "answer_right_ending": int},
    "xwinograd": {"sentence": str, "option1": str, "option2": str, "answer": str},
}
# Packaged-only extras that a Hub row keeps when it has them.
OPTIONAL_FIELDS: dict[str, dict[str, type]] = {"xwinograd": {"source": str}}


@dataclass(frozen=True)
class RowSet:
    task: str
    language: str
    split: str
    rows: list[dict[str, Any]]
    source: str  # "packaged" | "hub"
    location: str  # packaged file relative path, or "hub:<id>/<config>/<split>" (or the local mirror dir)
    sha256: str | None  # verified checksum of the packaged file (None for hub)
    derived: bool
    note: str


_ROWS_CACHE: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
_QUESTIONS_CACHE: dict[tuple[Any, ...], dict[str, list[str]]] = {}
_MANIFEST_CACHE: dict[tuple[Any, ...], dict[str, Any]] = {}


# ------------------------------------------------------------------------------------------- packaged data

def data_dir() -> Path:
    """The packaged data directory; the environment variable BENCH_DATA_DIR overrides it (tests use it)."""
    env = os.environ.get(ENV_DATA_DIR)
    if env:
        return Path(env)
    return Path(__file__).resolve().parent / "data"


def _dir(given: Path | str | None) -> Path:
    return Path(given) if given is not None else data_dir()


def manifest(data_dir: Path | None = None) -> dict[str, Any]:
    """The parsed ``manifest.json`` of the packaged data (DataError if missing or malformed)."""
    path = _dir(data_dir) / MANIFEST_NAME
    try:
        st = path.stat()
    except OSError:
        raise DataError(f"{path}: packaged data manifest is missing; reinstall statement-bench") from None
    key = (str(path), st.st_mtime_ns, st.st_size)
    cached = _MANIFEST_CACHE.get(key)
    if cached is None:
        try:
            cached = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataError(f"{path}: unreadable manifest ({_reason(exc)}); reinstall statement-bench") \
                from None
        if not isinstance(cached, dict) or not isinstance(cached.get("tasks"), dict):
            raise DataError(f"{path}: malformed manifest (no 'tasks' object); reinstall statement-bench")
        if cached.get("format_version") != FORMAT_VERSION:
            raise DataError(f"{path}: manifest format_version {cached.get('format_version')!r} is not "
                            f"{FORMAT_VERSION}; reinstall statement-bench")
        if len(_MANIFEST_CACHE) > 16:
            _MANIFEST_CACHE.clear()
        _MANIFEST_CACHE[key] = cached
    return cached


def _entry(man: dict[str, Any], ddir: Path, task: str, split: str, language: str) -> dict[str, Any]:
    try:
        info = man["tasks"][task]["splits"][split][language]
        _ = (info["file"], info["sha256"], info["rows"])
    except (KeyError, TypeError):
        raise DataError(f"{ddir / MANIFEST_NAME}: no entry for {task}/{split}/{language}; "
                        "reinstall statement-bench") from None
    if not isinstance(info, dict):
        raise DataError(f"{ddir / MANIFEST_NAME}: malformed entry for {task}/{split}/{language}")
    return info


def _read_verified(ddir: Path, rel: str, expected: str) -> tuple[Path, bytes]:
    path = ddir / rel
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: packaged data file cannot be read ({_reason(exc)}); "
                        "reinstall statement-bench") from None
    got = hashlib.sha256(data).hexdigest()
    if got != expected:
        raise DataError(f"{path}: checksum mismatch (expected {expected[:12]}..., got {got[:12]}...); "
                        f"{REINSTALL}")
    return path, data


def parse_jsonl_gz(path: Path, data: bytes, reinstall: str = REINSTALL,
                   check: Callable[[dict[str, Any], int], None] | None = None) -> list[dict[str, Any]]:
    """Rows of a packaged gzip JSON Lines file; ``check(row, line)`` may raise ValueError for a bad row.
    Every failure is one DataError naming the file (and line)."""
    try:
        text = gzip.decompress(data).decode("utf-8")
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: corrupt or truncated gzip data ({_reason(exc)}); {reinstall}") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 ({_reason(exc)}); {reinstall}") from None
    rows: list[dict[str, Any]] = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: line {n}: bad JSON ({exc.msg}); {reinstall}") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}: line {n}: not a JSON object; {reinstall}")
        if check is not None:
            try:
                check(row, n)
            except ValueError as exc:
                raise DataError(f"{path}: {_reason(exc)}; {reinstall}") from None
        rows.append(row)
    return rows


def _load_packaged(task: str, language: str, split: str, ddir: Path) -> RowSet:
    man = manifest(ddir)
    info = _entry(man, ddir, task, split, language)
    rel = str(info["file"])
    path = ddir / rel
    try:
        st = path.stat()
    except OSError:
        raise DataError(f"{path}: packaged data file is missing; reinstall statement-bench") from None
    key = (str(ddir.resolve()), task, split, language, info["sha256"], st.st_mtime_ns, st.st_size)
    rows = _ROWS_CACHE.get(key)
    if rows is None:
        path, data = _read_verified(ddir, rel, str(info["sha256"]))
        rows = parse_jsonl_gz(path, data)
        if len(rows) != info["rows"]:
            raise DataError(f"{path}: {len(rows)} rows, the manifest says {info['rows']}; {REINSTALL}")
        want = get_task(task).rows(split, language)
        if len(rows) != want:
            raise DataError(f"{path}: {len(rows)} rows, harness/tasks/specs.py expects {want}")
        _ROWS_CACHE[key] = rows
    return RowSet(task=task, language=language, split=split, rows=[dict(r) for r in rows], source="packaged",
                  location=rel, sha256=str(info["sha256"]), derived=bool(info.get("derived", False)),
                  note=str(info.get("note", "")))


# ------------------------------------------------------------------------------------------------------ hub


def _normalise(task: str, raw: dict[str, Any], where: str) -> dict[str, Any]:
    row: dict[str, Any] = {}
    fields = {**SCHEMAS[task], **OPTIONAL_FIELDS.get(task, {})}
    for name, typ in fields.items():
        if name not in raw:
            if name in SCHEMAS[task]:
                raise DataError(f"{where}: missing field {name!r}")
            continue
        value = raw[name]
        try:
            if typ is bool:
                if isinstance(value, bool):
                    row[name] = value
                elif isinstance(value, int) and value in (0, 1):
                    row[name] = bool(value)
                else:
                    raise ValueError
            elif typ is int:
                if isinstance(value, bool) or value is None:
                    raise ValueError
                if isinstance(value, float) and not value.is_integer():
                    raise ValueError
                row[name] = int(value)
            else:  # str
                if value is None or isinstance(value, bool):
                    raise ValueError
                if isinstance(value, (int, float)):  # e.g. a Hub mirror with answer 1/2 as numbers
                    value = str(int(value))
                if not isinstance(value, str):
                    raise ValueError
                row[name] = value
        except (ValueError, TypeError):
            raise DataError(f"{where}: field {name!r} has value {value!r}, expected {typ.__name__}") from None
    return row


def _load_hub(task: str, language: str, split: str, hub_dir: str | None) -> RowSet:
    spec = get_task(task)
    hub_id = spec.hub_id
    prefix = f"could not load {hub_id} config {language} split {split} from the Hub"
    if hub_dir:
        path = os.path.join(hub_dir, hub_id)
        location = path
        if not os.path.isdir(path):
            raise DataError(f"{prefix}: local mirror {path} does not exist (--hub-dir {hub_dir})")
    else:
        path = hub_id
        location = f"hub:{hub_id}/{language}/{split}"
    try:
        import datasets  # lazy: heavy, and only needed for --data-source hub
    except ImportError as exc:
        raise DataError(f"{prefix}: the `datasets` package is not installed ({_reason(exc)})") from None
    try:
        ds = datasets.load_dataset(path, name=language, split=split)
        raw_rows = ds.to_list() if hasattr(ds, "to_list") else list(ds)
    except Exception as exc:  # offline, missing config/split, bad files: all one line
        raise DataError(f"{prefix}: {_reason(exc)}") from None
    rows = [_normalise(task, dict(r), f"{location} ({language}/{split}) row {i}")
            for i, r in enumerate(raw_rows)]
    note = f"{len(rows)} rows from {hub_id} config {language} split {split}"
    if hub_dir:
        note += f" (local mirror {path})"
    packaged_rows = spec.rows(split, language)
    if len(rows) != packaged_rows:
        note += f"; the packaged split has {packaged_rows} rows"
    return RowSet(task=task, language=language, split=split, rows=rows, source="hub", location=location,
                  sha256=None, derived=False, note=note)


# ------------------------------------------------------------------------------------------------- public

def load_rows(task: str, language: str, split: str, source: str = "packaged", hub_dir: str | None = None,
              data_dir: Path | None = None) -> RowSet:
    """Rows of ``task``/``language``/``split`` in the packaged (= Hub) schema.

    UsageError for an unknown task, language, split or source; DataError for missing, corrupt or malformed
    data.
    """
    spec = get_task(task)
    check_language(spec, language)
    check_split(spec, split)
    if source == "packaged":
        return _load_packaged(task, language, split, _dir(data_dir))
    if source == "hub":
        return _load_hub(task, language, split, hub_dir)
    raise UsageError(f"unknown --data-source {source!r}; choose from: {', '.join(SOURCES)}")


def copa_en_questions(split: str, data_dir: Path | None = None) -> list[str]:
    """English COPA ``question`` ("cause"/"effect") for XCOPA ``idx`` 0..N-1 of ``split``."""
    check_split(get_task("xcopa"), split)
    ddir = _dir(data_dir)
    man = manifest(ddir)
    try:
        info = man["extras"]["copa_en_question"]
        rel, expected = str(info["file"]), str(info["sha256"])
    except (KeyError, TypeError):
        raise DataError(f"{ddir / MANIFEST_NAME}: no extras.copa_en_question entry; "
                        "reinstall statement-bench") from None
    key = (str(ddir.resolve()), rel, expected)
    questions = _QUESTIONS_CACHE.get(key)
    if questions is None:
        path, data = _read_verified(ddir, rel, expected)
        try:
            parsed = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataError(f"{path}: bad JSON ({_reason(exc)}); {REINSTALL}") from None
        if not isinstance(parsed, dict):
            raise DataError(f"{path}: not a JSON object; {REINSTALL}")
        questions = parsed
        _QUESTIONS_CACHE[key] = questions
    values = questions.get(split)
    want = get_task("xcopa").splits[split]
    if (not isinstance(values, list) or len(values) != want
            or any(v not in ("cause", "effect") for v in values)):
        raise DataError(f"{ddir / rel}: split {split!r} is not a list of {want} 'cause'/'effect' values; "
                        f"{REINSTALL}")
    return list(values)


def verify_all(data_dir: Path | None = None) -> list[str]:
    """Check every packaged file against its sha256 (and the manifest against the task specs).

    Returns one line per problem; an empty list means the packaged data is intact.
    """
    ddir = _dir(data_dir)
    try:
        man = manifest(ddir)
    except DataError as exc:
        return [str(exc)]
    problems: list[str] = []
    files: list[tuple[str, str]] = []
    for task, spec in TASKS.items():
        for split in spec.splits:
            for language in spec.languages:
                try:
                    info = _entry(man, ddir, task, split, language)
                except DataError as exc:
                    problems.append(str(exc))
                    continue
                if info["rows"] != spec.rows(split, language):
                    problems.append(f"{ddir / MANIFEST_NAME}: {task}/{split}/{language} lists {info['rows']} "
                                    f"rows, harness/tasks/specs.py expects {spec.rows(split, language)}")
                files.append((str(info["file"]), str(info["sha256"])))
    for name, info in (man.get("extras") or {}).items():
        try:
            files.append((str(info["file"]), str(info["sha256"])))
        except (KeyError, TypeError):
            problems.append(f"{ddir / MANIFEST_NAME}: extras.{name} has no file/sha256")
    for rel, expected in files:
        try:
            _read_verified(ddir, rel, expected)
        except DataError as exc:
            problems.append(str(exc))
    return problems

"""Rows of a task/language/split: packaged data, a task file's local files, or the Hugging Face Hub.

The packaged data lives in ``harness/tasks/data`` (written by ``scripts/package_data.py``): gzip-compressed
JSON Lines in the Hugging Face schema of each task, listed with their sha256 and row count in
``manifest.json``. Nothing outside the installed package is read at run time. Every file is checked against
its sha256 before it is parsed.

A task file with ``data: files`` names its own local files (JSON Lines, JSON, CSV, TSV or parquet, gzip
allowed), each checked against its sha256 when the file gives one. The Hub path (``source="hub"``) reads a
task's ``hub:`` dataset through ``datasets.load_dataset`` (or a local mirror laid out by repo id). Rows from
every source are normalised to the task file's ``schema:``.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import DataError, UsageError, one_line
from harness.packaged import parse_jsonl_text, read_manifest, read_verified, verified_rows
from harness.tasks.specs import check_language, check_split, get_task, load_registry
from harness.tasks.taskfile import DataFile, TaskSpec

#: an exception as one line, whole (parser errors carry the detail on later lines)
_reason = functools.partial(one_line, limit=400, join_lines=True)

ENV_DATA_DIR = "BENCH_DATA_DIR"
MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1
REINSTALL = "the packaged data is corrupt, reinstall statement-bench"

SOURCES = ("packaged", "hub")  # --data-source: the task's own data (packaged or its files), or the Hub


def schema_of(task: str | TaskSpec) -> dict[str, type]:
    """Field -> type of the task's rows (its task file's ``schema:``), in document order."""
    return dict(get_task(task).schema)


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
_FILE_SHA: dict[tuple[Any, ...], str] = {}  # sha256 of a task file's data file, by the same key as its rows


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
    return read_manifest(_dir(data_dir) / MANIFEST_NAME, what="packaged data", reinstall=REINSTALL,
                         format_version=FORMAT_VERSION, top_key="tasks")


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
    return path, read_verified(path, expected, what="packaged data", reinstall=REINSTALL)


def _load_packaged(spec: TaskSpec, language: str, split: str, ddir: Path) -> RowSet:
    info = _entry(manifest(ddir), ddir, spec.name, split, language)
    rel = str(info["file"])
    path = ddir / rel
    rows = verified_rows(path, str(info["sha256"]), int(info["rows"]), what="packaged data", reinstall=REINSTALL)
    want = spec.rows(split, language)
    if len(rows) != want:
        raise DataError(f"{path}: {len(rows)} rows, task file {spec.path} expects {want}")
    return RowSet(task=spec.name, language=language, split=split, rows=rows, source="packaged", location=rel,
                  sha256=str(info["sha256"]), derived=bool(info.get("derived", False)),
                  note=str(info.get("note", "")))


# ------------------------------------------------------------------------------------- a task file's own files

def _read_table(df: DataFile, data: bytes) -> list[dict[str, Any]]:
    """Rows of one local file; any parse failure is one DataError naming the file (and line)."""
    path = df.path
    if df.format == "parquet":
        try:
            import io

            import pandas as pd

            frame = pd.read_parquet(io.BytesIO(data))
        except Exception as exc:  # pyarrow/pandas raise many types; all mean "unreadable"
            raise DataError(f"{path}: unreadable parquet ({_reason(exc)})") from None
        return [{str(k): (v.item() if hasattr(v, "item") else v) for k, v in r.items()}
                for r in frame.to_dict(orient="records")]
    if path.name.lower().endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(f"{path}: corrupt or truncated gzip data ({_reason(exc)})") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 ({_reason(exc)})") from None
    if df.format == "jsonl":
        return parse_jsonl_text(path, text, reinstall="fix the file")
    if df.format == "json":
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: bad JSON ({exc.msg} at line {exc.lineno})") from None
        if isinstance(parsed, dict) and len(parsed) == 1 and isinstance(next(iter(parsed.values())), list):
            parsed = next(iter(parsed.values()))  # {"data": [...]}
        if not isinstance(parsed, list) or not all(isinstance(r, dict) for r in parsed):
            raise DataError(f"{path}: a JSON data file must be a list of objects")
        return parsed
    import csv
    import io

    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter="\t" if df.format == "tsv" else ",",
                            quoting=csv.QUOTE_NONE if df.format == "tsv" else csv.QUOTE_MINIMAL)
    rows = []
    for n, row in enumerate(reader, 2):
        if None in row or any(v is None for v in row.values()):
            raise DataError(f"{path}: line {n}: {len(reader.fieldnames or [])} columns in the header, "
                            "a different number in this row")
        rows.append(dict(row))
    return rows


def _load_files(spec: TaskSpec, language: str, split: str) -> RowSet:
    df = spec.splits[split].files.get(language)
    if df is None:
        raise DataError(f"task file {spec.path}: splits.{split}.files has no file for language {language!r}")
    try:
        st = df.path.stat()
    except OSError:
        raise DataError(f"{df.path}: data file of task {spec.name!r} ({split}/{language}) does not exist "
                        f"(task file {spec.path})") from None
    key = (str(df.path.resolve()), df.sha256, st.st_mtime_ns, st.st_size, spec.sha256)
    rows = _ROWS_CACHE.get(key)
    if rows is None:
        try:
            data = df.path.read_bytes()
        except OSError as exc:
            raise DataError(f"{df.path}: cannot be read ({_reason(exc)})") from None
        got = hashlib.sha256(data).hexdigest()
        if df.sha256 is not None and got != df.sha256:
            raise DataError(f"{df.path}: checksum mismatch (task file {spec.path} says {df.sha256[:12]}..., "
                            f"the file is {got[:12]}...)")
        raw_rows = _read_table(df, data)
        rows = [normalise_row(spec, _renamed(spec, r), f"{df.path} row {i}") for i, r in enumerate(raw_rows)]
        want = spec.splits[split].rows_for(language)
        if want is not None and len(rows) != want:
            raise DataError(f"{df.path}: {len(rows)} rows, task file {spec.path} says splits.{split}.rows {want}")
        _ROWS_CACHE[key] = rows
        _FILE_SHA[key] = got
    try:
        location = str(df.path.relative_to(spec.base_dir))
    except ValueError:
        location = str(df.path)
    return RowSet(task=spec.name, language=language, split=split, rows=[dict(r) for r in rows], source="files",
                  location=location, sha256=_FILE_SHA[key], derived=False,
                  note=f"{len(rows)} rows from {df.path.name}" + ("" if df.sha256 else " (no sha256 in the task file)"))


def _renamed(spec: TaskSpec, row: dict[str, Any]) -> dict[str, Any]:
    if not spec.rename:
        return row
    return {spec.rename.get(k, k): v for k, v in row.items()}


# ------------------------------------------------------------------------------------------------------ hub


def normalise_row(spec: TaskSpec, raw: dict[str, Any], where: str) -> dict[str, Any]:
    """A row in the task's schema (field order and types); a task without a schema keeps the row as it is."""
    if not spec.schema and not spec.optional_schema:
        return dict(raw)
    row: dict[str, Any] = {}
    fields = {**spec.schema, **spec.optional_schema}
    for name, typ in fields.items():
        if name not in raw:
            if name in spec.schema:
                raise DataError(f"{where}: missing field {name!r}")
            continue
        value = raw[name]
        try:
            if typ is bool:
                if isinstance(value, bool):
                    row[name] = value
                elif isinstance(value, int) and value in (0, 1):
                    row[name] = bool(value)
                elif isinstance(value, str) and value.strip().lower() in ("true", "false", "0", "1"):
                    row[name] = value.strip().lower() in ("true", "1")
                else:
                    raise ValueError
            elif typ is int:
                if isinstance(value, bool) or value is None:
                    raise ValueError
                if isinstance(value, float) and not value.is_integer():
                    raise ValueError
                if isinstance(value, str):
                    value = value.strip()
                row[name] = int(value)
            elif typ is float:
                if isinstance(value, bool) or value is None:
                    raise ValueError
                row[name] = float(value)
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


def _load_hub(spec: TaskSpec, language: str, split: str, hub_dir: str | None) -> RowSet:
    if spec.hub is None:
        raise UsageError(f"--data-source hub: task {spec.name!r} has no `hub:` in its task file {spec.path}")
    hub_id = spec.hub.path
    config = spec.hub.config_for(language)
    hub_split = spec.hub.split_for(split)
    prefix = f"could not load {hub_id} config {config} split {hub_split} from the Hub"
    if hub_dir:
        path = os.path.join(hub_dir, hub_id)
        location = path
        if not os.path.isdir(path):
            raise DataError(f"{prefix}: local mirror {path} does not exist (--hub-dir {hub_dir})")
    else:
        path = hub_id
        location = f"hub:{hub_id}/{config}/{hub_split}"
    try:
        import datasets  # lazy: heavy, and only needed for --data-source hub
    except ImportError as exc:
        raise DataError(f"{prefix}: the `datasets` package is not installed ({_reason(exc)})") from None
    try:
        ds = datasets.load_dataset(path, name=config, split=hub_split)
        raw_rows = ds.to_list() if hasattr(ds, "to_list") else list(ds)
    except Exception as exc:  # offline, missing config/split, bad files: all one line
        raise DataError(f"{prefix}: {_reason(exc)}") from None
    rows = [normalise_row(spec, _renamed(spec, dict(r)), f"{location} ({language}/{split}) row {i}")
            for i, r in enumerate(raw_rows)]
    note = f"{len(rows)} rows from {hub_id} config {config} split {hub_split}"
    if hub_dir:
        note += f" (local mirror {path})"
    packaged_rows = spec.splits[split].rows_for(language)
    if packaged_rows is not None and len(rows) != packaged_rows:
        note += f"; the packaged split has {packaged_rows} rows"
    return RowSet(task=spec.name, language=language, split=split, rows=rows, source="hub", location=location,
                  sha256=None, derived=False, note=note)


# ------------------------------------------------------------------------------------------------- public

def load_rows(task: str | TaskSpec, language: str, split: str, source: str = "packaged",
              hub_dir: str | None = None, data_dir: Path | None = None) -> RowSet:
    """Rows of ``task``/``language``/``split`` in the task's schema.

    ``source`` "packaged" reads the task's own data (the package's data for built-in tasks, the task file's
    files for others); "hub" reads its ``hub:`` dataset. UsageError for an unknown task, language, split or
    source; DataError for missing, corrupt or malformed data.
    """
    spec = get_task(task)
    check_language(spec, language)
    check_split(spec, split)
    if source == "packaged":
        if spec.source == "packaged":
            return _load_packaged(spec, language, split, _dir(data_dir))
        if spec.source == "files":
            return _load_files(spec, language, split)
        return _load_hub(spec, language, split, hub_dir)
    if source == "hub":
        return _load_hub(spec, language, split, hub_dir)
    raise UsageError(f"unknown --data-source {source!r}; choose from: {', '.join(SOURCES)}")


def variant_values(spec: TaskSpec, variant: str, choice: str, split: str,
                   data_dir: Path | None = None) -> list[Any] | None:
    """The values a task-file variant puts in its field, indexed by the row field it names (None = the
    row's own value). Packaged extras and a task file's own JSON files are both ``{split: [value, ...]}``."""
    check_split(spec, split)
    v = spec.variants[variant]
    join = v.choices[choice]
    if join is None:
        return None
    if "packaged_extra" in join:
        ddir = _dir(data_dir)
        man = manifest(ddir)
        try:
            info = man["extras"][join["packaged_extra"]]
            rel, expected = str(info["file"]), str(info["sha256"])
        except (KeyError, TypeError):
            raise DataError(f"{ddir / MANIFEST_NAME}: no extras.{join['packaged_extra']} entry; "
                            "reinstall statement-bench") from None
        location, reinstall = ddir / rel, REINSTALL
    else:
        location = spec.base_dir / str(join["file"])
        expected, reinstall = str(join["sha256"]), "fix the file or its sha256 in the task file"
        ddir, rel = location.parent, location.name
    key = (str(location.resolve()), expected)
    table = _QUESTIONS_CACHE.get(key)
    if table is None:
        if "packaged_extra" in join:
            path, data = _read_verified(ddir, rel, expected)
        else:
            try:
                data = location.read_bytes()
            except OSError as exc:
                raise DataError(f"{location}: cannot be read ({_reason(exc)})") from None
            if hashlib.sha256(data).hexdigest() != expected:
                raise DataError(f"{location}: checksum mismatch; {reinstall}")
            path = location
        try:
            parsed = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataError(f"{path}: bad JSON ({_reason(exc)}); {reinstall}") from None
        if not isinstance(parsed, dict):
            raise DataError(f"{path}: not a JSON object; {reinstall}")
        table = parsed
        _QUESTIONS_CACHE[key] = table
    values = table.get(split)
    want = spec.splits[split].rows
    allowed = spec.allowed.get(v.field)
    if (not isinstance(values, list) or (want is not None and len(values) != want)
            or (allowed is not None and any(x not in allowed for x in values))):
        what = f"{want} " if want is not None else ""
        of = f" {'/'.join(repr(a) for a in allowed)}" if allowed else ""
        raise DataError(f"{location}: split {split!r} is not a list of {what}{of} values".replace("  ", " ")
                        + f"; {reinstall}")
    return list(values)


def verify_all(data_dir: Path | None = None) -> list[str]:
    """Check every packaged file against its sha256 (and the manifest against the task files).

    Returns one line per problem; an empty list means the packaged data is intact.
    """
    ddir = _dir(data_dir)
    try:
        man = manifest(ddir)
    except DataError as exc:
        return [str(exc)]
    problems: list[str] = []
    files: list[tuple[str, str]] = []
    for task, spec in load_registry().tasks.items():
        if spec.source != "packaged":
            continue
        for split in spec.splits:
            for language in spec.languages:
                try:
                    info = _entry(man, ddir, task, split, language)
                except DataError as exc:
                    problems.append(str(exc))
                    continue
                if info["rows"] != spec.rows(split, language):
                    problems.append(f"{ddir / MANIFEST_NAME}: {task}/{split}/{language} lists {info['rows']} "
                                    f"rows, task file {spec.path} expects {spec.rows(split, language)}")
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

"""Parse one declarative task file (YAML) into a typed `TaskSpec`: the single place that knows a task.

The format is documented in ``docs/task-files.md``; the four built-in tasks are such files in
``harness/tasks/builtin``. Every error is one line naming the file and the key.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness.errors import UsageError

FORMAT_VERSION = 1
DATA_FORMATS = ("jsonl", "json", "csv", "tsv", "parquet")
GOLD_KINDS = ("index", "index1", "label", "text")
SOURCES = ("packaged", "files", "hub")
_TYPES: dict[str, type] = {"str": str, "int": int, "bool": bool, "float": float}
_TOP_KEYS = {"task", "title", "format", "languages", "splits", "default_split", "data", "hub", "schema",
             "rename", "example", "statements", "lm_eval", "variants", "overlap", "license", "note", "notes"}


@dataclass(frozen=True)
class FunctionRef:
    """A ``!function module.fn`` reference: ``module`` is a .py file beside the task file (or importable)."""

    qualname: str
    base_dir: str  # the task file's directory

    def resolve(self) -> Any:
        from harness.tasks.functions import resolve_function

        return resolve_function(self.qualname, Path(self.base_dir))


@dataclass(frozen=True)
class DataFile:
    path: Path
    sha256: str | None
    format: str  # jsonl | json | csv | tsv | parquet (gzip allowed for the text formats)


@dataclass(frozen=True)
class SplitSpec:
    name: str
    rows: int | None  # rows per language (checked when given)
    rows_by_language: Mapping[str, int]
    files: Mapping[str, DataFile]  # language -> local file (source "files")

    def rows_for(self, language: str) -> int | None:
        return self.rows_by_language.get(language, self.rows)


@dataclass(frozen=True)
class HubSource:
    path: str  # dataset id (or a directory under --hub-dir)
    name: str | None  # config name; "{language}" is replaced
    split: str  # split name; "{split}" is replaced

    def config_for(self, language: str) -> str | None:
        return self.name.format(language=language) if self.name is not None else None

    def split_for(self, split: str) -> str:
        return self.split.format(split=split)


@dataclass(frozen=True)
class Variant:
    """A choice of where one row field comes from (``--task-option NAME=VALUE``), e.g. a corrected field."""

    name: str
    field: str
    default: str
    choices: Mapping[str, Mapping[str, Any] | None]  # value -> None (the row's own field) or a join spec


@dataclass(frozen=True)
class LMEvalPrompt:
    """The causal-LM prompt in lm-eval's own terms (``ConfigurableTask`` semantics, zero-shot)."""

    doc_to_text: Any = None
    doc_to_choice: Any = None
    doc_to_target: Any = None
    target_delimiter: str = " "
    literals: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # language -> {name: text}
    reuse: str | None = None  # an lm-eval task whose prompt is reused ("{language}" replaced)
    reuse_config: str | None = None  # its config file under lm_eval/tasks (found by name when not given)
    upstream: str | None = None  # lm-eval's own task for the bridge and the parity check ("{language}" replaced)
    upstream_config: str | None = None  # its config file under lm_eval/tasks

    @property
    def declared(self) -> bool:
        return self.doc_to_choice is not None or self.reuse is not None


@dataclass(frozen=True)
class TaskSpec:
    name: str
    title: str
    path: Path | None
    sha256: str
    languages: tuple[str, ...]
    splits: Mapping[str, SplitSpec]
    default_split: str
    source: str  # packaged | files | hub: where rows come from by default
    hub: HubSource | None
    schema: Mapping[str, type]  # row field -> type (the packaged/Hub schema, in document order)
    optional_schema: Mapping[str, type]
    rename: Mapping[str, str]  # raw column -> schema field (applied on load)
    fields: Mapping[str, str]  # Example field -> row field
    candidate_fields: tuple[str, ...]
    candidate_labels: tuple[str, ...]
    candidate_list: str | None  # one row field holding a list of candidates
    gold_field: str
    gold_kind: str
    allowed: Mapping[str, tuple[str, ...]]  # row field -> allowed values
    statements: Mapping[str, Any]  # {"file": Path} or the inline template document
    lm_eval: LMEvalPrompt | None
    variants: Mapping[str, Variant]
    overlap: tuple[str, ...]  # training-set names that are this task (the training mixture refuses them)
    license: str
    note: str

    @property
    def n_candidates(self) -> int | None:
        if self.candidate_fields:
            return len(self.candidate_fields)
        if self.candidate_labels:
            return len(self.candidate_labels)
        return None

    @property
    def chance(self) -> float | None:
        """Chance accuracy (%) from the number of candidates (None when it varies per example)."""
        n = self.n_candidates
        return 100.0 / n if n else None

    @property
    def hub_id(self) -> str:
        return self.hub.path if self.hub is not None else ""

    @property
    def base_dir(self) -> Path:
        return self.path.parent if self.path is not None else Path(".")

    def rows(self, split: str, language: str) -> int:
        """Rows the split must have for ``language`` (0 when the file does not say)."""
        return self.splits[split].rows_for(language) or 0

    @property
    def example_fields(self) -> set[str]:
        return set(self.fields)


# ---------------------------------------------------------------------------------------------------- parsing


class _Loader(yaml.SafeLoader):
    pass


def _fail(path: Path, key: str, msg: str) -> UsageError:
    return UsageError(f"task file {path}: {key}: {msg}")


def _loader_for(path: Path) -> type[yaml.SafeLoader]:
    base = str(path.parent.resolve())

    class Loader(_Loader):  # one class per file: the constructor knows the file's directory
        pass

    def function_ctor(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> FunctionRef:
        return FunctionRef(str(loader.construct_scalar(node)), base)

    Loader.add_constructor("!function", function_ctor)
    return Loader


def read_task_document(path: Path) -> tuple[dict[str, Any], bytes]:
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise UsageError(f"task file {path}: cannot read ({err.strerror})") from None
    try:
        doc = yaml.load(raw, Loader=_loader_for(path))
    except yaml.YAMLError as err:
        raise UsageError(f"task file {path}: invalid YAML ({' '.join(str(err).split())[:200]})") from None
    if not isinstance(doc, dict):
        raise UsageError(f"task file {path}: not a YAML mapping")
    return doc, raw


def _str(path: Path, key: str, value: Any, *, required: bool = True) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise _fail(path, key, f"needs a text value (got {value!r})")
    return value


def _str_list(path: Path, key: str, value: Any, *, allow_empty: bool = False) -> tuple[str, ...]:
    if not isinstance(value, list) or (not value and not allow_empty):
        raise _fail(path, key, f"needs a{'' if allow_empty else ' non-empty'} list (got {value!r})")
    out = []
    for i, item in enumerate(value):
        if isinstance(item, bool):
            raise _fail(path, f"{key}[{i}]", f"needs a text value (got {item!r}: quote yes/no/on/off in YAML)")
        if not isinstance(item, (str, int)):
            raise _fail(path, f"{key}[{i}]", f"needs a text value (got {item!r})")
        out.append(str(item))
    if len(set(out)) != len(out):
        raise _fail(path, key, "has duplicate entries")
    return tuple(out)


def _int(path: Path, key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _fail(path, key, f"needs a whole number >= 0 (got {value!r})")
    return value


def _mapping(path: Path, key: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(path, key, f"needs a mapping (got {type(value).__name__})")
    return value


def _data_format(path: Path, key: str, file: str, given: Any) -> str:
    if given is not None:
        if given not in DATA_FORMATS:
            raise _fail(path, key, f"format {given!r}: choose one of {', '.join(DATA_FORMATS)}")
        return str(given)
    name = file.lower().removesuffix(".gz")
    for fmt in DATA_FORMATS:
        if name.endswith("." + fmt):
            return fmt
    raise _fail(path, key, f"cannot tell the format of {file!r} from its name; add `format:` "
                           f"({', '.join(DATA_FORMATS)})")


def _data_file(path: Path, key: str, value: Any, language: str, split: str) -> DataFile:
    if isinstance(value, str):
        value = {"path": value}
    spec = _mapping(path, key, value)
    unknown = set(spec) - {"path", "sha256", "format"}
    if unknown:
        raise _fail(path, key, f"unknown key(s) {sorted(unknown)}; use path, sha256, format")
    rel = _str(path, f"{key}.path", spec.get("path")).format(language=language, split=split)
    sha = spec.get("sha256")
    if isinstance(sha, int) and not isinstance(sha, bool) and 0 <= sha < 10**64:
        sha = f"{sha:064d}"  # an all-digit checksum unquoted in YAML reads as a number
    if sha is not None and (not isinstance(sha, str) or len(sha) != 64
                            or any(c not in "0123456789abcdef" for c in sha)):
        raise _fail(path, f"{key}.sha256", f"needs 64 lower-case hex digits (got {sha!r})")
    file = Path(rel) if Path(rel).is_absolute() else path.parent / rel
    return DataFile(file, sha, _data_format(path, key, rel, spec.get("format")))


def _splits(path: Path, raw: Any, languages: tuple[str, ...], source: str) -> dict[str, SplitSpec]:
    splits = _mapping(path, "splits", raw)
    if not splits:
        raise _fail(path, "splits", "needs at least one split")
    out: dict[str, SplitSpec] = {}
    for name, spec in splits.items():
        key = f"splits.{name}"
        if isinstance(spec, int) and not isinstance(spec, bool):
            spec = {"rows": spec}
        spec = _mapping(path, key, spec if spec is not None else {})
        unknown = set(spec) - {"rows", "files"}
        if unknown:
            raise _fail(path, key, f"unknown key(s) {sorted(unknown)}; use rows, files")
        rows_raw = spec.get("rows")
        rows: int | None = None
        by_lang: dict[str, int] = {}
        if isinstance(rows_raw, dict):
            for lang, n in rows_raw.items():
                if lang not in languages:
                    raise _fail(path, f"{key}.rows.{lang}", f"is not one of the task's languages {languages}")
                by_lang[str(lang)] = _int(path, f"{key}.rows.{lang}", n)
        elif rows_raw is not None:
            rows = _int(path, f"{key}.rows", rows_raw)
        files: dict[str, DataFile] = {}
        files_raw = spec.get("files")
        if files_raw is not None:
            if isinstance(files_raw, str) or (isinstance(files_raw, dict) and "path" in files_raw):
                files = {lang: _data_file(path, f"{key}.files", files_raw, lang, str(name)) for lang in languages}
            else:
                files_map = _mapping(path, f"{key}.files", files_raw)
                for lang, f in files_map.items():
                    if lang not in languages:
                        raise _fail(path, f"{key}.files.{lang}", f"is not one of the task's languages {languages}")
                    files[str(lang)] = _data_file(path, f"{key}.files.{lang}", f, str(lang), str(name))
                missing = [lang for lang in languages if lang not in files]
                if missing:
                    raise _fail(path, f"{key}.files", f"has no file for language(s) {' '.join(missing)}")
        if source == "files" and not files:
            raise _fail(path, key, "needs `files:` (the task reads local files)")
        out[str(name)] = SplitSpec(str(name), rows, by_lang, files)
    return out


def _schema(path: Path, raw: Any) -> tuple[dict[str, type], dict[str, type]]:
    if raw is None:
        return {}, {}
    spec = _mapping(path, "schema", raw)
    required: dict[str, type] = {}
    optional: dict[str, type] = {}
    for name, typ in spec.items():
        key = f"schema.{name}"
        target = required
        if isinstance(typ, str) and typ.endswith("?"):
            typ, target = typ[:-1], optional
        if typ not in _TYPES:
            raise _fail(path, key, f"type {typ!r}: choose one of {', '.join(_TYPES)} (add ? for optional)")
        target[str(name)] = _TYPES[typ]
    return required, optional


def _example(path: Path, raw: Any) -> dict[str, Any]:
    spec = _mapping(path, "example", raw)
    unknown = set(spec) - {"fields", "candidates", "gold", "allowed"}
    if unknown:
        raise _fail(path, "example", f"unknown key(s) {sorted(unknown)}; use fields, candidates, gold, allowed")
    fields_raw = spec.get("fields")
    if isinstance(fields_raw, list):
        fields = {f: f for f in _str_list(path, "example.fields", fields_raw)}
    else:
        fields = {str(k): _str(path, f"example.fields.{k}", v) for k, v in
                  _mapping(path, "example.fields", fields_raw).items()}
    cands = spec.get("candidates")
    cand_fields: tuple[str, ...] = ()
    cand_labels: tuple[str, ...] = ()
    cand_list: str | None = None
    if isinstance(cands, list):
        cand_fields = _str_list(path, "example.candidates", cands)
    else:
        c = _mapping(path, "example.candidates", cands)
        given = [k for k in ("fields", "labels", "field") if k in c]
        if len(given) != 1 or set(c) - {"fields", "labels", "field"}:
            raise _fail(path, "example.candidates", "needs exactly one of `fields` (row fields), `labels` "
                                                     "(a fixed label list) or `field` (a row field holding a list)")
        if "fields" in c:
            cand_fields = _str_list(path, "example.candidates.fields", c["fields"])
        elif "labels" in c:
            cand_labels = _str_list(path, "example.candidates.labels", c["labels"])
        else:
            cand_list = _str(path, "example.candidates.field", c["field"])
    if len(cand_fields or cand_labels or ("x", "y")) < 2:
        raise _fail(path, "example.candidates", "needs at least two candidates")
    gold = spec.get("gold")
    if isinstance(gold, str):
        gold = {"field": gold}
    gold = _mapping(path, "example.gold", gold)
    if set(gold) - {"field", "as"}:
        raise _fail(path, "example.gold", "use `field` and `as`")
    kind = gold.get("as", "index")
    if kind not in GOLD_KINDS:
        raise _fail(path, "example.gold.as", f"{kind!r}: choose one of {', '.join(GOLD_KINDS)} (index is 0-based, "
                                             "index1 1-based, label a label name, text the candidate text)")
    if kind == "label" and not cand_labels:
        raise _fail(path, "example.gold.as", "label needs `candidates: {labels: [...]}`")
    allowed = {str(k): _str_list(path, f"example.allowed.{k}", v)
               for k, v in _mapping(path, "example.allowed", spec.get("allowed") or {}).items()}
    return {"fields": fields, "candidate_fields": cand_fields, "candidate_labels": cand_labels,
            "candidate_list": cand_list, "gold_field": _str(path, "example.gold.field", gold.get("field")),
            "gold_kind": str(kind), "allowed": allowed}


def _lm_eval(path: Path, raw: Any, languages: tuple[str, ...]) -> LMEvalPrompt | None:
    if raw is None:
        return None
    spec = _mapping(path, "lm_eval", raw)
    allowed = {"doc_to_text", "doc_to_choice", "doc_to_target", "target_delimiter", "literals", "task", "config",
               "upstream", "upstream_config"}
    unknown = set(spec) - allowed
    if unknown:
        raise _fail(path, "lm_eval", f"unknown key(s) {sorted(unknown)}; use {', '.join(sorted(allowed))}")
    literals: dict[str, dict[str, Any]] = {}
    for lang, words in _mapping(path, "lm_eval.literals", spec.get("literals") or {}).items():
        if lang not in languages:
            raise _fail(path, f"lm_eval.literals.{lang}", f"is not one of the task's languages {languages}")
        literals[str(lang)] = dict(_mapping(path, f"lm_eval.literals.{lang}", words))
    if literals:
        keys = {lang: set(w) for lang, w in literals.items()}
        first = next(iter(keys.values()))
        for lang, k in keys.items():
            if k != first:
                raise _fail(path, f"lm_eval.literals.{lang}", f"has keys {sorted(k)}, others have {sorted(first)}")
    for key in ("doc_to_text", "doc_to_choice", "doc_to_target"):
        value = spec.get(key)
        if value is not None and not isinstance(value, (str, int, list, dict, FunctionRef)):
            raise _fail(path, f"lm_eval.{key}", "needs a field name, a Jinja template, a list or !function")
    delimiter = spec.get("target_delimiter", " ")
    if not isinstance(delimiter, str):
        raise _fail(path, "lm_eval.target_delimiter", f"needs text (got {delimiter!r})")
    reuse = spec.get("task")
    if reuse is not None and spec.get("doc_to_choice") is not None:
        raise _fail(path, "lm_eval", "give either `task` (reuse an lm-eval task's prompt) or doc_to_* keys")
    if reuse is None and spec.get("doc_to_choice") is None and spec.get("upstream") is None:
        raise _fail(path, "lm_eval", "needs `doc_to_choice` (with doc_to_text), `task` or `upstream`")
    return LMEvalPrompt(
        doc_to_text=spec.get("doc_to_text", ""), doc_to_choice=spec.get("doc_to_choice"),
        doc_to_target=spec.get("doc_to_target"), target_delimiter=delimiter, literals=literals,
        reuse=_str(path, "lm_eval.task", reuse) if reuse is not None else None,
        reuse_config=_str(path, "lm_eval.config", spec["config"]) if spec.get("config") is not None else None,
        upstream=_str(path, "lm_eval.upstream", spec["upstream"]) if spec.get("upstream") is not None else None,
        upstream_config=(_str(path, "lm_eval.upstream_config", spec["upstream_config"])
                         if spec.get("upstream_config") is not None else None))


def _variants(path: Path, raw: Any, schema_fields: set[str]) -> dict[str, Variant]:
    out: dict[str, Variant] = {}
    for name, spec in _mapping(path, "variants", raw or {}).items():
        key = f"variants.{name}"
        spec = _mapping(path, key, spec)
        fld = _str(path, f"{key}.field", spec.get("field"))
        choices = _mapping(path, f"{key}.choices", spec.get("choices"))
        default = _str(path, f"{key}.default", spec.get("default"))
        if default not in choices:
            raise _fail(path, f"{key}.default", f"{default!r} is not one of its choices {sorted(choices)}")
        parsed: dict[str, Mapping[str, Any] | None] = {}
        for value, join in choices.items():
            if join is None:
                parsed[str(value)] = None
                continue
            j = _mapping(path, f"{key}.choices.{value}", join)
            if set(j) != {"packaged_extra", "by"} and set(j) != {"file", "sha256", "by"}:
                raise _fail(path, f"{key}.choices.{value}", "needs `packaged_extra` (or `file` + `sha256`) and "
                                                            "`by` (the row field that indexes it)")
            parsed[str(value)] = dict(j)
        out[str(name)] = Variant(str(name), fld, default, parsed)
    return out


def _statements(path: Path, raw: Any) -> dict[str, Any]:
    if isinstance(raw, str):
        raw = {"file": raw}
    spec = _mapping(path, "statements", raw)
    if "file" in spec:
        if set(spec) != {"file"}:
            raise _fail(path, "statements", "give either `file` or inline `templates`, not both")
        rel = _str(path, "statements.file", spec["file"])
        return {"file": path.parent / rel}
    if not isinstance(spec.get("templates"), list):
        raise _fail(path, "statements", "needs `file:` (a template file) or an inline `templates:` list")
    return dict(spec)


def parse_task_file(path: Path) -> TaskSpec:
    """Read and validate one task file (everything but the data rows, which load on demand)."""
    path = Path(path)
    doc, raw = read_task_document(path)
    unknown = set(doc) - _TOP_KEYS
    if unknown:
        raise _fail(path, sorted(unknown)[0], f"unknown key; known keys: {', '.join(sorted(_TOP_KEYS))}")
    fmt = doc.get("format", FORMAT_VERSION)
    if fmt != FORMAT_VERSION:
        raise _fail(path, "format", f"{fmt!r} is not {FORMAT_VERSION} (this bench reads task-file format "
                                    f"{FORMAT_VERSION})")
    name = _str(path, "task", doc.get("task"))
    if not all(c.isalnum() or c in "_-." for c in name):
        raise _fail(path, "task", f"{name!r}: use letters, digits, '_', '-' or '.'")
    languages = _str_list(path, "languages", doc.get("languages"))
    data = doc.get("data", "files")
    if data not in SOURCES:
        raise _fail(path, "data", f"{data!r}: choose one of {', '.join(SOURCES)} (default: files)")
    splits = _splits(path, doc.get("splits"), languages, str(data))
    default_split = doc.get("default_split") or next(iter(splits))
    if default_split not in splits:
        raise _fail(path, "default_split", f"{default_split!r} is not one of the splits {sorted(splits)}")
    hub_raw = doc.get("hub")
    hub: HubSource | None = None
    if hub_raw is not None:
        if isinstance(hub_raw, str):
            hub_raw = {"path": hub_raw}
        h = _mapping(path, "hub", hub_raw)
        if set(h) - {"path", "name", "split"}:
            raise _fail(path, "hub", "use path, name, split")
        hub = HubSource(_str(path, "hub.path", h.get("path")),
                        _str(path, "hub.name", h["name"]) if h.get("name") is not None else None,
                        _str(path, "hub.split", h.get("split", "{split}")))
    if data == "hub" and hub is None:
        raise _fail(path, "hub", "is needed when `data: hub`")
    schema, optional = _schema(path, doc.get("schema"))
    rename = {str(k): _str(path, f"rename.{k}", v) for k, v in _mapping(path, "rename", doc.get("rename") or {})
              .items()}
    example = _example(path, doc.get("example"))
    statements = _statements(path, doc.get("statements"))
    lm_eval = _lm_eval(path, doc.get("lm_eval"), languages)
    variants = _variants(path, doc.get("variants"), set(schema))
    for v in variants.values():
        if schema and v.field not in schema:
            raise _fail(path, f"variants.{v.name}.field", f"{v.field!r} is not a schema field")
    row_fields = set(schema) | set(optional)
    if row_fields:  # with a schema, every mapped field must be in it
        used = [("example.fields", f) for f in example["fields"].values()] + [
            ("example.candidates", f) for f in example["candidate_fields"]] + [
            ("example.gold.field", example["gold_field"])]
        if example["candidate_list"]:
            used.append(("example.candidates.field", example["candidate_list"]))
        for key, f in used:
            if f not in row_fields:
                raise _fail(path, key, f"{f!r} is not a schema field ({', '.join(schema)})")
    overlap = _str_list(path, "overlap", doc.get("overlap") or [name], allow_empty=True)
    note = doc.get("note", doc.get("notes", ""))
    return TaskSpec(
        name=name, title=_str(path, "title", doc.get("title"), required=False) or name, path=path.resolve(),
        sha256=hashlib.sha256(raw).hexdigest(), languages=languages, splits=splits,
        default_split=str(default_split), source=str(data), hub=hub, schema=schema, optional_schema=optional,
        rename=rename, fields=example["fields"], candidate_fields=example["candidate_fields"],
        candidate_labels=example["candidate_labels"], candidate_list=example["candidate_list"],
        gold_field=example["gold_field"], gold_kind=example["gold_kind"], allowed=example["allowed"],
        statements=statements, lm_eval=lm_eval, variants=variants, overlap=overlap,
        license=_str(path, "license", doc.get("license"), required=False),
        note=" ".join(str(note).split()) if note else "")


def describe(spec: TaskSpec) -> str:
    """A stable JSON summary (for `bench task check` and tests)."""
    return json.dumps({"task": spec.name, "title": spec.title, "languages": list(spec.languages),
                       "splits": {k: v.rows for k, v in spec.splits.items()}, "default_split": spec.default_split,
                       "candidates": spec.n_candidates, "chance": spec.chance}, ensure_ascii=False)

"""lm-eval task YAMLs generated from OUR packaged data.

For every task/language, `write_tasks` writes

- ``data/<task>_<lang>_<split>_<sha12>.jsonl``: the packaged rows (first ``limit``) in the task's Hugging Face
  schema, which is the doc format lm-eval's configs expect (XWinograd ``answer`` is the string "1"/"2",
  XStoryCloze ``answer_right_ending`` the int 1/2, XCOPA/XNLI ``label`` an int);
- ``<task>/sb_<task>_<lang>.yaml``: a copy of lm-eval's own task config for that task and language (its
  ``include`` chain resolved), with exactly these changes:

  * ``task: sb_<task>_<lang>`` (so it never collides with lm-eval's ``<task>_<lang>``);
  * ``dataset_path: json``, ``dataset_name: null``, ``dataset_kwargs: {data_files: {<split>: <abs path>},
    cache_dir: <out_dir>/hf_datasets_cache}`` and ``test_split: <split>`` (no training/validation/fewshot split);
  * ``acc_norm`` is added to ``metric_list`` when lm-eval's config lacks it (it changes no request; the bridge
    reads lm-eval's per-sample ``acc_norm`` flag to cross-check its length-normalised prediction).

  ``!function`` references stay functions of lm-eval's own task modules (``lm_eval.tasks.<task>.utils...``), so
  prompts are built by lm-eval's code, not by a copy of it.

The data file names carry a content hash: the ``datasets`` cache keys json files by path, so new content
always gets a new path.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness.errors import DataError, UsageError
from harness.lmeval import lm_eval_version, require_lm_eval
from harness.tasks import loading
from harness.tasks.specs import check_language, check_split, get_task
from harness.tasks.taskfile import TaskSpec

TASK_PREFIX = "sb_"
DATA_SUBDIR = "data"
CACHE_SUBDIR = "hf_datasets_cache"

# keys of lm-eval's config that describe where the data comes from (replaced) or grouping (dropped)
_REPLACED_KEYS = ("task", "task_alias", "dataset_path", "dataset_name", "dataset_kwargs", "training_split",
                  "validation_split", "test_split", "fewshot_split", "include", "group", "tag")


def task_name(task: str, language: str) -> str:
    """Our lm-eval task name, ``sb_<task>_<language>``."""
    return f"{TASK_PREFIX}{task}_{language}"


def upstream_task_name(task: str, language: str) -> str:
    """lm-eval's own task name, ``<task>_<language>``."""
    return f"{task}_{language}"


def parse_task_name(name: str) -> tuple[str, str]:
    """``sb_<task>_<language>`` -> ``(task, language)``."""
    if not name.startswith(TASK_PREFIX) or "_" not in name[len(TASK_PREFIX):]:
        raise ValueError(f"not a statement-bench lm-eval task name: {name!r}")
    task, _, lang = name[len(TASK_PREFIX):].rpartition("_")
    return task, lang


# ------------------------------------------------------------------------------------ lm-eval's own configs

@dataclass(frozen=True)
class FunctionRef:
    """A ``!function`` reference of an lm-eval YAML, kept unresolved (module as a dotted import path)."""

    qualname: str  # e.g. "lm_eval.tasks.<task>.utils.doc_to_text_<language>"


class _UpstreamLoader(yaml.SafeLoader):
    pass


class _Dumper(yaml.SafeDumper):
    pass


def _represent_function(dumper: yaml.SafeDumper, ref: FunctionRef) -> yaml.Node:
    return dumper.represent_scalar("!function", ref.qualname)


_Dumper.add_representer(FunctionRef, _represent_function)


def _load_upstream(path: Path, lm_eval_dir: Path, seen: frozenset[Path] = frozenset()) -> dict[str, Any]:
    """lm-eval's YAML with its includes merged (local keys win), ``!function`` kept as `FunctionRef`."""
    path = path.resolve()
    if path in seen:
        raise UsageError(f"include cycle at {path}")
    base = path.parent

    def function_ctor(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> FunctionRef:
        spec = str(loader.construct_scalar(node))
        module, _, fn = spec.rpartition(".")
        module_file = (base / f"{module.replace('.', '/')}.py").resolve()
        try:
            rel = module_file.relative_to(lm_eval_dir.resolve().parent)
        except ValueError:
            raise UsageError(f"{path}: !function {spec} is outside the lm_eval package") from None
        if not module_file.is_file():
            raise UsageError(f"{path}: !function {spec}: {module_file} does not exist")
        return FunctionRef(".".join(rel.with_suffix("").parts) + "." + fn)

    class _Loader(_UpstreamLoader):  # one class per file: the constructor knows the file's directory
        pass

    _Loader.add_constructor("!function", function_ctor)
    try:
        cfg = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)
    except (OSError, yaml.YAMLError) as err:
        raise UsageError(f"cannot read lm-eval's task config {path}: {err}") from None
    if not isinstance(cfg, dict):
        raise UsageError(f"{path}: not a YAML mapping")
    includes = cfg.pop("include", None)
    if includes is None:
        return cfg
    merged: dict[str, Any] = {}
    for inc in includes if isinstance(includes, list) else [includes]:
        inc_path = Path(inc) if Path(inc).is_absolute() else base / inc
        inc_cfg = _load_upstream(inc_path, lm_eval_dir, seen | {path})
        inc_cfg.pop("task_list", None)
        merged.update(inc_cfg)
    merged.update(cfg)
    return merged


def upstream_config_path(task: str | TaskSpec, language: str) -> Path:
    """lm-eval's config file of the task's ``lm_eval.upstream`` task for ``language``."""
    spec = get_task(task)
    check_language(spec, language)
    prompt = spec.lm_eval
    if prompt is None or (prompt.upstream is None and prompt.reuse is None):
        raise UsageError(f"task {spec.name!r} names no lm-eval task (`lm_eval.upstream` or `lm_eval.task` in "
                         f"{spec.path}); the lm-eval bridge cannot run it")
    name = (prompt.upstream or prompt.reuse or "").format(language=language)
    rel = (prompt.upstream_config if prompt.upstream else prompt.reuse_config)
    if rel is not None:
        path = require_lm_eval() / "tasks" / rel.format(language=language)
        if not path.is_file():
            raise UsageError(f"lm-eval has no task config {rel.format(language=language)} "
                             "(is lm-eval 0.4.13 installed?)")
        return path
    return find_upstream_path(name)


_TASK_LINE = re.compile(r"^task:\s*['\"]?([^'\"\s#]+)['\"]?\s*(#.*)?$", re.MULTILINE)
_INDEX: dict[str, dict[str, Path]] = {}


def _task_index() -> dict[str, Path]:
    """lm-eval task name -> its YAML under lm_eval/tasks (scanned once per process)."""
    root = require_lm_eval() / "tasks"
    key = str(root)
    if key not in _INDEX:
        index: dict[str, Path] = {}
        for path in sorted(root.rglob("*.yaml")):
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                continue
            for m in _TASK_LINE.finditer(text):
                index.setdefault(m.group(1), path)
        _INDEX[key] = index
    return _INDEX[key]


def find_upstream_path(name: str) -> Path:
    path = _task_index().get(name)
    if path is None:
        raise UsageError(f"lm-eval {lm_eval_version() or ''} has no task {name!r} (no YAML under lm_eval/tasks "
                         "with that `task:`)".replace("  ", " "))
    return path


def find_upstream_config(name: str, config: str | None = None) -> dict[str, Any]:
    """lm-eval's own config of task ``name`` (includes resolved, ``!function`` as `FunctionRef`)."""
    if config is not None:
        path = require_lm_eval() / "tasks" / config
        if not path.is_file():
            raise UsageError(f"lm-eval has no task config {config}")
    else:
        path = find_upstream_path(name)
    return _load_upstream(path, require_lm_eval())


def upstream_config(task: str | TaskSpec, language: str) -> dict[str, Any]:
    """lm-eval's own config for ``<task>_<language>``, includes resolved, functions as `FunctionRef`."""
    return _load_upstream(upstream_config_path(task, language), require_lm_eval())


def task_config(task: str, language: str, split: str, data_file: Path, cache_dir: Path) -> dict[str, Any]:
    """Our task config: lm-eval's config for task/language reading ``data_file`` as split ``split``."""
    upstream = upstream_config(task, language)
    kept = {k: v for k, v in upstream.items() if k not in _REPLACED_KEYS}
    metrics = [dict(m) for m in kept.get("metric_list") or [{"metric": "acc"}]]
    if not any(m.get("metric") == "acc_norm" for m in metrics):
        metrics.append({"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True})
    kept["metric_list"] = metrics
    return {
        "task": task_name(task, language),
        "dataset_path": "json",
        "dataset_name": None,
        "dataset_kwargs": {"data_files": {split: str(data_file.resolve())}, "cache_dir": str(cache_dir.resolve())},
        "training_split": None,
        "validation_split": None,
        "test_split": split,
        **kept,
    }


# ----------------------------------------------------------------------------------------------------- docs

def to_lmeval_doc(task: str | TaskSpec, row: dict[str, Any]) -> dict[str, Any]:
    """A row in exactly the task's schema (field order, types: the Hub's) that lm-eval's config reads."""
    spec = get_task(task)
    if not spec.schema:
        return dict(row)
    doc: dict[str, Any] = {}
    for name, typ in spec.schema.items():
        if name not in row:
            raise DataError(f"{spec.name} row has no field {name!r}: {row!r:.200}")
        value = row[name]
        if typ is str and isinstance(value, int) and not isinstance(value, bool):
            value = str(value)  # e.g. an XWinograd answer given as a number: the Hub has "1"/"2"
        if typ is bool:
            ok = isinstance(value, bool)
        elif typ is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif typ is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        else:
            ok = isinstance(value, str)
        if not ok:
            raise DataError(f"{spec.name} row field {name!r} is {value!r}, expected {typ.__name__}")
        doc[name] = value
    return doc


def _jsonl(docs: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs).encode("utf-8")


def write_data(out_dir: Path, task: str, language: str, split: str, docs: list[dict[str, Any]]) -> Path:
    """``docs`` (lm-eval docs, see `to_lmeval_doc`) as a JSON Lines file named by its content hash."""
    data = _jsonl(docs)
    digest = hashlib.sha256(data).hexdigest()[:12]
    path = out_dir / DATA_SUBDIR / f"{task}_{language}_{split}_{digest}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.is_file() or path.read_bytes() != data:
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
    return path


def write_task(out_dir: Path, task: str, language: str, split: str, rows: list[dict[str, Any]]) -> str:
    """Write the lm-eval task for ``task``/``language`` reading ``rows`` (packaged/Hub schema) as ``split``.

    Returns its task name (``sb_<task>_<language>``); the YAML is ``<out_dir>/<task>/<name>.yaml``.
    """
    spec = get_task(task)
    check_language(spec, language)
    check_split(spec, split)
    if not rows:
        raise UsageError(f"{task}/{language}/{split}: no rows to write for lm-eval")
    out_dir = Path(out_dir)
    data_file = write_data(out_dir, task, language, split, [to_lmeval_doc(spec, r) for r in rows])
    cfg = task_config(task, language, split, data_file, out_dir / CACHE_SUBDIR)
    name = str(cfg["task"])
    yaml_path = out_dir / task / f"{name}.yaml"
    yaml_path.parent.mkdir(parents=True, exist_ok=True)
    header = (f"# Generated by harness.lmeval.task_yaml from lm-eval's {task}/"
              f"{upstream_config_path(task, language).name} for statement-bench's {split} data "
              f"({len(rows)} rows).\n")
    text = header + yaml.dump(cfg, Dumper=_Dumper, allow_unicode=True, sort_keys=False, width=10**6)
    tmp = yaml_path.with_suffix(".yaml.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(yaml_path)
    return name


def write_tasks(out_dir: Path, task: str, languages: list[str], split: str, limit: int | None) -> list[str]:
    """Write one lm-eval task (YAML + local data) per language from the packaged rows (first ``limit``);
    returns the task names, in order.

    Point lm-eval at them with ``TaskManager(include_path=out_dir)`` (``include_defaults=False`` is enough).
    """
    spec = get_task(task)
    check_split(spec, split)
    if limit is not None and limit < 1:
        raise UsageError(f"limit {limit}: must be a positive number of examples")
    names = []
    for language in languages:
        check_language(spec, language)
        rows = loading.load_rows(task, language, split).rows
        names.append(write_task(Path(out_dir), task, language, split, rows if limit is None else rows[:limit]))
    return names


__all__ = ["FunctionRef", "parse_task_name", "task_config", "task_name", "to_lmeval_doc", "upstream_config",
           "upstream_config_path", "upstream_task_name", "write_data", "write_task", "write_tasks"]

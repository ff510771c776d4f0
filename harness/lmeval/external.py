"""`bench run --lm-eval-task NAME`: any lm-eval ``multiple_choice`` task as our Examples.

lm-eval does not score encoders (its issue #1840); this module turns the documents of any lm-eval 0.4.13
``multiple_choice`` task into `Example`\\ s, so statement-tuned encoders (and causal LMs through the same runner)
can be run on lm-eval's registry. One job: lm-eval task -> `ExampleSet`, statement templates, causal-LM prompt.

- The task is found and built by lm-eval itself (``TaskManager``: its own registry plus the ``--include-path``
  directories as lm-eval include paths; only the include paths are indexed when they define every requested
  task, which is the same answer, since include paths override lm-eval's own tasks, without scanning lm-eval's
  ~15k YAML files). Groups, tags and tasks that are not ``multiple_choice`` (``generate_until``,
  ``loglikelihood``, ``loglikelihood_rolling``) are refused with one line, before any data is read.
- Data: lm-eval's own ``download`` (``datasets.load_dataset`` with the task's ``dataset_*`` keys). For local data
  (``dataset_path`` a packaged builder such as ``json``/``csv``/``parquet``, a local path, or ``custom_dataset``)
  the ``datasets`` cache is written to a temporary directory of this process (removed at exit), unless the task
  sets its own ``cache_dir``; Hub datasets use the usual Hugging Face cache, where an offline copy lives.
- Docs: the test split (else validation), or ``--split`` (a split the task's dataset has), through the task's
  ``process_docs``; ``--limit`` keeps the first N. Each doc becomes an `Example`: ``task`` = the lm-eval task
  name, ``language`` = the task's ``metadata.language`` when it sets one, else ``"default"`` (lm-eval's configs
  carry no language), ``doc`` = a JSON copy of the doc, ``candidates`` = ``doc_to_choice``, ``gold`` = lm-eval's
  gold index (``doc_to_target`` as an index or a choice text; ``doc_to_text`` for multiple-input tasks).
- Causal LMs: `LMEvalTaskPrompt.triples` gives exactly lm-eval's requests: the zero-shot context of
  ``fewshot_context(doc, num_fewshot=0)`` and the continuations of ``construct_requests`` (``Instance.args``),
  computed by lm-eval's task object at plan time, so `LMEvalRequestBuilder` sends ``(context,
  target_delimiter + continuation)`` as lm-eval does; ``acc_norm`` divides by the ``doc_to_choice`` string.
- Encoders: one statement per choice, ``doc_to_text + target_delimiter + choice`` (multiple-input tasks:
  ``choice + target_delimiter + doc_to_target``), template id ``lm-eval-concat``. Its inline `TemplateSet`'s
  checksum covers the concatenation rule and a digest of every selected request, so the run identity changes
  exactly when what is scored changes.
- Data identity: `RowSet` source ``lm-eval``, location ``lm-eval:<task>/<split>``, sha256 of the canonical JSON
  of all docs of the split.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import logging
import math
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from numbers import Integral
from pathlib import Path
from typing import Any

from harness.core import Example
from harness.errors import BenchError, DataError, UsageError, one_line
from harness.lmeval import lm_eval_version, require_lm_eval
from harness.statement.templates import TemplateSet, parse_inline_templates
from harness.tasks.examples import ExampleSet
from harness.tasks.loading import RowSet
from harness.tasks.taskfile import SplitSpec, TaskSpec

SOURCE = "lm-eval"
TEMPLATE_ID = "lm-eval-concat"
DEFAULT_LANGUAGE = "default"
CANDIDATE_SLOT = "choice"
_LANGUAGE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")

Triple = tuple[str, str, str]  # (context, continuation without the delimiter, acc_norm choice)


@dataclass(frozen=True)
class LMEvalTaskPrompt:
    """lm-eval's own requests for the selected docs of one task (a ready prompt for `LMEvalRequestBuilder`)."""

    task: str
    target_delimiter: str
    requests: Mapping[tuple[str, int], tuple[Triple, ...]]  # (split, doc index) -> one triple per choice

    def triples(self, example: Example) -> list[Triple]:
        found = self.requests.get((example.split, example.index))
        if found is None:
            raise DataError(f"{example.example_id}: no lm-eval request was built for this doc of {self.task}")
        return list(found)


@dataclass(frozen=True)
class ExternalTask:
    """One ``--lm-eval-task``: what the runner needs (example set, task record, templates, causal prompt)."""

    name: str
    language: str
    output_type: str
    spec: TaskSpec
    example_set: ExampleSet
    templates: TemplateSet
    prompt: LMEvalTaskPrompt


# --------------------------------------------------------------------------------------------- lm-eval access

@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """lm-eval warns about every metric without an aggregation and every overridden task; datasets draws
    progress bars: keep both to errors while tasks load (restored afterwards)."""
    import datasets

    loggers = [logging.getLogger(n) for n in ("lm_eval", "lm-eval", "datasets")]
    levels = [lg.level for lg in loggers]
    bars = datasets.utils.is_progress_bar_enabled()
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    datasets.utils.disable_progress_bars()
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
        if bars:
            datasets.utils.enable_progress_bars()


_CACHE_DIR: list[Path] = []


def _cache_dir() -> Path:
    """This process's temporary ``datasets`` cache for local task data (removed at exit)."""
    if not _CACHE_DIR:
        path = Path(tempfile.mkdtemp(prefix="statement-bench-lmeval-datasets-"))
        atexit.register(shutil.rmtree, path, ignore_errors=True)
        _CACHE_DIR.append(path)
    return _CACHE_DIR[0]


def _local_data(cfg: Mapping[str, Any]) -> bool:
    """Whether lm-eval reads this task's data from local files (not the Hub)."""
    if cfg.get("custom_dataset") is not None:
        return True
    path = cfg.get("dataset_path")
    if not isinstance(path, str):
        return False
    from datasets.packaged_modules import _PACKAGED_DATASETS_MODULES

    return path in _PACKAGED_DATASETS_MODULES or Path(path).expanduser().exists()


@contextlib.contextmanager
def _datasets_cache(cfg: Mapping[str, Any]) -> Iterator[None]:
    kwargs = cfg.get("dataset_kwargs") or {}
    if not _local_data(cfg) or (isinstance(kwargs, Mapping) and kwargs.get("cache_dir")):
        yield
        return
    import datasets.config

    before = datasets.config.HF_DATASETS_CACHE
    datasets.config.HF_DATASETS_CACHE = _cache_dir()
    try:
        yield
    finally:
        datasets.config.HF_DATASETS_CACHE = before


_REGISTRY: list[Any] = []  # lm-eval's own registry (no include paths): indexed once per process (~15k YAMLs)


def _task_manager(include_paths: Sequence[str], defaults: bool) -> Any:
    """lm-eval's TaskManager over its own tasks (``defaults``) and the include paths (directories; a YAML file
    given as an include path is indexed on its own, as lm-eval indexes the files of a directory)."""
    from lm_eval.tasks import TaskManager
    from lm_eval.tasks._index import TaskIndex
    from lm_eval.tasks._yaml_loader import load_yaml

    if defaults and not include_paths:
        if not _REGISTRY:
            _REGISTRY.append(TaskManager())
        return _REGISTRY[0]
    paths = [Path(p).expanduser() for p in include_paths]
    dirs = [str(p) for p in paths if p.is_dir()]
    manager = TaskManager(include_path=dirs or None, include_defaults=defaults)
    for file in (p for p in paths if p.is_file()):
        found: dict[str, Any] = {}
        try:
            TaskIndex.process_cfg(load_yaml(file, resolve_func=False, recursive=True), file, found)
        except Exception:  # not an lm-eval config (e.g. one of our task files): lm-eval skips it too
            continue
        manager.task_index.update(found)
    return manager


def find_tasks(names: Sequence[str], include_paths: Sequence[str]) -> tuple[Any, dict[str, Any]]:
    """(TaskManager, name -> lm-eval index entry), or a one-line UsageError naming an unknown task."""
    require_lm_eval()
    with _quiet():
        if include_paths:
            manager = _task_manager(include_paths, defaults=False)
            if all(manager.task_index.get(n) is not None for n in names):
                return manager, {n: manager.task_index[n] for n in names}
        manager = _task_manager(include_paths, defaults=True)
    entries = {}
    for name in names:
        entry = manager.task_index.get(name)
        if entry is None:
            import difflib

            close = difflib.get_close_matches(name, manager.all_subtasks, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            where = " or --include-path" if include_paths else " (add --include-path DIR for your own lm-eval YAMLs)"
            raise UsageError(f"--lm-eval-task {name}: lm-eval {lm_eval_version() or ''} has no task {name!r} in "
                             f"its registry{where}{hint}".replace("  ", " "))
        entries[name] = entry
    return manager, entries


def _is_our_task_file(path: Path) -> bool:
    """A statement-bench task file (a top-level ``example:`` key), which lm-eval indexes as a task too."""
    try:
        return any(line.startswith("example:") for line in path.read_text(encoding="utf-8").splitlines())
    except (OSError, UnicodeDecodeError):
        return False


def _refuse_unsupported(name: str, entry: Any) -> dict[str, Any]:
    """The entry's config (includes resolved, functions unresolved); a UsageError for groups, tags, our own task
    files and tasks that are not multiple_choice, before any data is read."""
    from lm_eval.tasks._index import Kind
    from lm_eval.tasks._yaml_loader import load_yaml

    if entry.kind in (Kind.GROUP, Kind.TAG):
        kind = "group" if entry.kind == Kind.GROUP else "tag"
        raise UsageError(f"--lm-eval-task {name}: an lm-eval {kind} of several tasks (no output_type of its own), "
                         "not a task; give its multiple_choice tasks one by one")
    path = Path(entry.yaml_path) if entry.yaml_path else None
    if path is not None and path.is_file() and _is_our_task_file(path):
        raise UsageError(f"--lm-eval-task {name}: {path} is a statement-bench task file, not an lm-eval task "
                         f"(output_type none); run it with --tasks {name}")
    cfg: dict[str, Any] = dict(entry.cfg or {})
    if path is not None:
        with contextlib.suppress(Exception):
            cfg = load_yaml(path, resolve_func=False, recursive=True)
    if "class" not in cfg:
        output_type = cfg.get("output_type", "generate_until")  # TaskConfig's default
        if output_type != "multiple_choice":
            raise UsageError(f"--lm-eval-task {name}: output_type {output_type}, not multiple_choice: only tasks "
                             "that score a fixed list of choices can run on statement scorers")
    return cfg


def _build(manager: Any, name: str, cfg: Mapping[str, Any]) -> Any:
    """lm-eval's task object (its dataset downloaded or read by lm-eval itself)."""
    try:
        with _quiet(), _datasets_cache(cfg):
            built = manager.load([name])["tasks"]
    except BenchError:
        raise
    except Exception as err:  # lm-eval and datasets raise many types; the CLI needs one line
        raise UsageError(f"--lm-eval-task {name}: lm-eval could not load the task ({one_line(err)})") from None
    task = built.get(name)
    if task is None:
        if len(built) == 1:
            task = next(iter(built.values()))
        else:
            raise UsageError(f"--lm-eval-task {name}: lm-eval loaded {len(built)} tasks for this name")
    output_type = getattr(task, "OUTPUT_TYPE", None)
    if output_type != "multiple_choice" or not hasattr(task, "doc_to_choice"):
        raise UsageError(f"--lm-eval-task {name}: output_type {output_type}, not multiple_choice: only tasks that "
                         "score a fixed list of choices can run on statement scorers")
    if getattr(task, "MULTIMODAL", False):
        raise UsageError(f"--lm-eval-task {name}: a multimodal task (doc_to_image/doc_to_audio); statements are "
                         "text only")
    return task


# --------------------------------------------------------------------------------------------------- docs

def jsonable(value: Any) -> Any:
    """A JSON-serialisable copy of a doc value (tuples as lists, bytes as hex, anything else as its text)."""
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, Integral):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return jsonable(value.tolist())
    return str(value)


def canonical_sha256(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _split_docs(task: Any, name: str, split: str | None) -> tuple[str, list[Any]]:
    config = task.config
    dataset = getattr(task, "dataset", None)
    available = [str(s) for s in dataset] if isinstance(dataset, Mapping) else []
    if split is None:
        split = config.test_split or config.validation_split
        if split is None:
            raise UsageError(f"--lm-eval-task {name}: the task has no test or validation split; give --split "
                             f"({', '.join(available) or 'none'})")
    if split not in available:
        raise UsageError(f"--split {split}: lm-eval task {name} has no such split (it has: "
                         f"{', '.join(available) or 'none'})")
    docs = dataset[split] if isinstance(dataset, Mapping) else []
    process = config.process_docs
    if process is not None:
        try:
            docs = process(docs)
        except Exception as err:
            raise DataError(f"lm-eval task {name}/{split}: process_docs failed: {one_line(err)}") from None
    return split, list(docs)


def _language(task: Any, name: str) -> str:
    metadata = task.config.metadata if isinstance(task.config.metadata, Mapping) else {}
    language = metadata.get("language")
    if language is None:
        return DEFAULT_LANGUAGE
    if not isinstance(language, str) or not _LANGUAGE_RE.match(language):
        raise UsageError(f"--lm-eval-task {name}: metadata.language {language!r} is not a language code "
                         "(letters, digits, '_' or '-')")
    return language


def _gold(task: Any, doc: Any, choices: list[str], where: str) -> int:
    """lm-eval's gold index (``ConfigurableTask.process_results``): an index, or a choice's text."""
    gold = task.doc_to_text(doc) if task.multiple_input else task.doc_to_target(doc)
    if isinstance(gold, list):
        raise UsageError(f"{where}: doc_to_target gives several gold targets {gold!r:.80}; one gold index per "
                         "example is needed")
    if isinstance(gold, str):
        if gold not in choices:
            raise DataError(f"{where}: gold {gold!r:.80} is not one of the choices {choices!r:.200}")
        return choices.index(gold)
    if not isinstance(gold, Integral) or not 0 <= int(gold) < len(choices):
        raise DataError(f"{where}: gold {gold!r:.80} is not an index of the {len(choices)} choices")
    return int(gold)


@dataclass(frozen=True)
class _Doc:
    fields: dict[str, str]
    candidates: tuple[str, ...]
    gold: int
    triples: tuple[Triple, ...]


def _one_doc(task: Any, name: str, doc: Any, doc_id: int, where: str) -> _Doc:
    """lm-eval's requests and gold for one doc, and the fields of our statements (see the module doc)."""
    delimiter = str(task.config.target_delimiter)
    step = "doc_to_choice"
    try:
        choices = [str(c) for c in task.doc_to_choice(doc)]
        step = "gold"
        gold = _gold(task, doc, choices, where)
        step = "fewshot_context"
        context = task.fewshot_context(doc=doc, num_fewshot=0, gen_prefix=task.doc_to_prefix(doc))
        step = "construct_requests"
        instances = task.construct_requests(doc=doc, ctx=context, metadata=(name, doc_id, task.config.repeats))
        args = [tuple(inst.args) for inst in (instances if isinstance(instances, list) else [instances])]
        step = "doc_to_text"
        text = task.doc_to_text(doc)
    except BenchError:
        raise
    except Exception as err:  # a template or a task function failed on this doc
        raise DataError(f"{where}: lm-eval's {step} failed: {one_line(err)}") from None
    if len(choices) < 2:
        raise DataError(f"{where}: doc_to_choice gave {len(choices)} choice(s); at least two are needed")
    args = args[:len(choices)]  # acc_mutual_info appends unconditional requests after the choices
    if len(args) != len(choices) or any(len(a) != 2 for a in args):
        raise DataError(f"{where}: lm-eval built {len(args)} requests for {len(choices)} choices")
    triples: list[Triple] = []
    for (ctx, cont), choice in zip(args, choices, strict=True):
        if not isinstance(ctx, str) or not isinstance(cont, str) or not cont.startswith(delimiter):
            raise DataError(f"{where}: lm-eval request {(ctx, cont)!r:.120} is not (context, delimiter + text)")
        triples.append((ctx, cont[len(delimiter):], choice))
    if task.multiple_input:
        if not isinstance(text, Integral):
            raise DataError(f"{where}: doc_to_text gave {type(text).__name__}, but the task is multiple-input "
                            "(its first doc's doc_to_text is a gold index)")
        fields = {"target": triples[0][1]}  # the shared continuation: doc_to_target as lm-eval writes it
    else:
        if not isinstance(text, str):
            raise DataError(f"{where}: doc_to_text gave {type(text).__name__}, not text")
        fields = {"context": text}
    return _Doc(fields, tuple(choices), gold, tuple(triples))


def _template_text(multiple_input: bool, delimiter: str) -> str:
    delim = delimiter.replace("{", "{{").replace("}", "}}")
    return f"{{{CANDIDATE_SLOT}}}{delim}{{target}}" if multiple_input else f"{{context}}{delim}{{{CANDIDATE_SLOT}}}"


def _templates(name: str, multiple_input: bool, delimiter: str, docs: Sequence[_Doc]) -> TemplateSet:
    digest = canonical_sha256([[list(d.fields.items()), list(d.candidates), [list(t) for t in d.triples]]
                               for d in docs])
    block = {"candidate_slot": CANDIDATE_SLOT,
             "templates": [{"id": TEMPLATE_ID, "text": _template_text(multiple_input, delimiter)}],
             "lm_eval": {"task": name, "requests_sha256": digest}}
    fields = {"target"} if multiple_input else {"context"}
    return parse_inline_templates(block, Path(f"{SOURCE}:{name}"), name, fields, None)


def _config_sha256(cfg: Mapping[str, Any]) -> str:
    return canonical_sha256(jsonable(dict(cfg)))


def _spec(name: str, task: Any, cfg: Mapping[str, Any], language: str, split: str, n_rows: int,
          yaml_path: Path | None, templates: TemplateSet, multiple_input: bool) -> TaskSpec:
    """A synthetic task record (title, split, path and checksum of lm-eval's config) for results and reports."""
    alias = getattr(task.config, "task_alias", None)
    field = "target" if multiple_input else "context"
    return TaskSpec(
        name=name, title=str(alias) if alias else name, path=yaml_path, sha256=_config_sha256(cfg),
        languages=(language,), splits={split: SplitSpec(split, n_rows, {}, {})}, default_split=split,
        source=SOURCE, hub=None, schema={}, optional_schema={}, rename={}, fields={field: field},
        candidate_fields=(), candidate_labels=(), candidate_list="choices", gold_field="gold", gold_kind="index",
        allowed={}, statements={"templates": [{"id": t.id, "text": t.text} for t in templates.templates],
                                "candidate_slot": CANDIDATE_SLOT},
        lm_eval=None, variants={}, overlap=(name,), license="",
        note=f"lm-eval {lm_eval_version() or ''} task ({task.OUTPUT_TYPE})".replace("  ", " "))


def load_lm_eval_task(manager: Any, name: str, entry: Any, *, split: str | None = None,
                      limit: int | None = None) -> ExternalTask:
    """One lm-eval multiple_choice task as an `ExternalTask` (see the module doc)."""
    cfg = _refuse_unsupported(name, entry)
    task = _build(manager, name, cfg)
    language = _language(task, name)
    split, raw_docs = _split_docs(task, name, split)
    if not raw_docs:
        raise DataError(f"lm-eval task {name}/{split}: no docs")
    json_docs = [jsonable(d) for d in raw_docs]
    sha = canonical_sha256(json_docs)
    selected = raw_docs if limit is None else raw_docs[:limit]
    built = [_one_doc(task, name, doc, i, f"{name}/{language}/{split}/{i} (lm-eval task {name})")
             for i, doc in enumerate(selected)]
    multiple_input = bool(task.multiple_input)
    delimiter = str(task.config.target_delimiter)
    examples = [Example(task=name, language=language, split=split, index=i, fields=d.fields,
                        candidates=d.candidates, gold=d.gold, doc=json_docs[i]) for i, d in enumerate(built)]
    rowset = RowSet(task=name, language=language, split=split, rows=json_docs, source=SOURCE,
                    location=f"{SOURCE}:{name}/{split}", sha256=sha, derived=False, note="")
    templates = _templates(name, multiple_input, delimiter, built)
    yaml_path = Path(entry.yaml_path).resolve() if entry.yaml_path else None
    prompt = LMEvalTaskPrompt(name, delimiter, {(split, i): d.triples for i, d in enumerate(built)})
    spec = _spec(name, task, cfg, language, split, len(raw_docs), yaml_path, templates, multiple_input)
    return ExternalTask(name=name, language=language, output_type=str(task.OUTPUT_TYPE), spec=spec,
                        example_set=ExampleSet(name, language, split, examples, rowset, len(raw_docs)),
                        templates=templates, prompt=prompt)


def load_lm_eval_tasks(names: Sequence[str], include_paths: Sequence[str] = (), *, split: str | None = None,
                       limit: int | None = None) -> list[ExternalTask]:
    """Every ``--lm-eval-task`` (duplicates once, in order); unsupported tasks are refused before any loads."""
    wanted = list(dict.fromkeys(names))
    if not wanted:
        return []
    manager, entries = find_tasks(wanted, include_paths)
    for name in wanted:  # refuse before any data is read
        _refuse_unsupported(name, entries[name])
    return [load_lm_eval_task(manager, name, entries[name], split=split, limit=limit) for name in wanted]


__all__ = ["DEFAULT_LANGUAGE", "SOURCE", "TEMPLATE_ID", "ExternalTask", "LMEvalTaskPrompt", "canonical_sha256",
           "find_tasks", "jsonable", "load_lm_eval_task", "load_lm_eval_tasks"]

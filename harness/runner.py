"""`bench run`: plan (validate everything), score what is missing, write samples as they come, then results.

Data flows one way: task -> examples -> requests -> backend scores -> samples -> metrics -> result file.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tqdm import tqdm

from harness import distributed
from harness.backends import registry as backend_registry
from harness.backends.base import Backend, BackendConfig, SampleEvaluator
from harness.core import (
    Example,
    LoglikelihoodRequest,
    Request,
    RequestBuilder,
    RequestKind,
    Sample,
    argmax,
    request_record,
)
from harness.errors import ScoreError, UsageError
from harness.results.lock import run_lock
from harness.results.metrics import accuracy, mean_over_languages
from harness.results.samples import SampleStore, merge_samples
from harness.results.schema import (
    RESULT_FILE,
    SAMPLES_FILE,
    SCHEMA_VERSION,
    LanguageResult,
    RunResult,
    TaskResult,
    write_result,
)
from harness.results.sensitivity import template_sensitivity
from harness.statement.templates import TemplateSet, task_templates
from harness.statement.verbalizer import ENSEMBLE_RULE, AllTemplatesRequestBuilder, StatementRequestBuilder
from harness.tasks.examples import ExampleSet, check_task_options, load_examples
from harness.tasks.registry import BUILTIN_DIR, load_registry
from harness.tasks.taskfile import TaskSpec

#: The schema version in a run's identity (its directory name): bumped only when what a run scores changes, so
#: result files of an earlier 1.x stay resumable (1.2 only added the optional efficiency record).
IDENTITY_SCHEMA = "1.1"


def _default_tasks() -> tuple[str, ...]:
    from harness.tasks.registry import default_task

    return (default_task(),)


@dataclass(frozen=True)
class RunConfig:
    backend: str = "encoder"
    model: str | None = None
    adapter: str | None = None
    tasks: tuple[str, ...] = field(default_factory=_default_tasks)
    languages: tuple[str, ...] | None = None  # None = every language of each task
    split: str | None = None  # None = each task's default eval split
    limit: int | None = None  # first N examples per language
    batch_size: int = 32
    seed: int = 0  # template draws (and a fresh head's init)
    dtype: str = "auto"
    device: str = "auto"
    threads: int | None = None
    max_length: int | None = None
    prompt: str = "default"  # causal LMs: default/lm-eval (log-likelihood) or statements (judge mode)
    chat_template: bool = False
    add_bos: bool | None = None
    trust_remote_code: bool = False
    backend_options: tuple[tuple[str, Any], ...] = ()  # backend-specific, e.g. (("tensor_parallel_size", 8),)
    data_source: str = "packaged"
    hub_dir: str | None = None
    task_options: tuple[tuple[str, str], ...] = ()  # --task-option NAME=VALUE (variants a task file declares)
    templates_dir: str | None = None
    templates_mode: str = "draw"  # draw: one seeded template per example; all: every template (robustness)
    lm_eval_tasks: tuple[str, ...] = ()  # --lm-eval-task: lm-eval multiple_choice tasks from its registry
    include_paths: tuple[str, ...] = ()  # --include-path: directories (or files) of user task files
    output_dir: str = "results"


@dataclass
class RunPlan:
    config: RunConfig
    example_sets: list[ExampleSet]
    templates: dict[str, TemplateSet]
    tasks: dict[str, TaskSpec] = field(default_factory=dict)
    #: every variant option that names the run (built-in tasks' always, so earlier run ids stay the same)
    task_options: dict[str, str] = field(default_factory=dict)
    #: causal-LM prompts that do not come from a task file's `lm_eval:` block (--lm-eval-task: lm-eval's own
    #: task objects), by task name; each has `triples(example)` and `target_delimiter` like `TaskPrompt`
    prompts: dict[str, Any] = field(default_factory=dict)


def _languages_for(spec: TaskSpec, wanted: tuple[str, ...] | None) -> list[str]:
    if wanted is None:
        return list(spec.languages)
    return [lang for lang in wanted if lang in spec.languages]


def plan_run(config: RunConfig) -> RunPlan:
    """Validate every input and load all data before anything is written or any model is loaded."""
    if not config.tasks and not config.lm_eval_tasks:
        raise UsageError("--tasks: give at least one task")
    if config.limit is not None and config.limit < 1:
        raise UsageError(f"--limit {config.limit}: must be a positive number of examples per language")
    if config.batch_size < 1:
        raise UsageError(f"--batch-size {config.batch_size}: must be at least 1")
    _check_templates_mode(config)
    _check_output_dir(config.output_dir)
    if config.backend_options:  # names, types and ranges, before any data or model is loaded
        backend_registry.parse_options(config.backend, dict(config.backend_options))
    registry = load_registry(config.include_paths)
    specs = {task: registry.get(task) for task in config.tasks}
    external = _lm_eval_tasks(config, specs)
    if config.languages is not None:
        known = {lang for spec in specs.values() for lang in spec.languages} | {e.language for e in external}
        unknown = [lang for lang in config.languages if lang not in known]
        if unknown:
            raise UsageError(f"--langs: {', '.join(unknown)} not in task(s) "
                             f"{', '.join((*config.tasks, *config.lm_eval_tasks))} "
                             f"(languages: {' '.join(sorted(known))})")
        for e in external:
            if e.language not in config.languages:
                raise UsageError(f"--lm-eval-task {e.name}: its language {e.language!r} is not in --langs "
                                 f"{','.join(config.languages)}")
    given = dict(config.task_options)
    check_task_options(list(specs.values()), given)
    named: dict[str, str] = {}
    for spec in [*(registry.tasks[t] for t in registry.builtin), *specs.values()]:
        for name, variant in spec.variants.items():
            named[name] = given.get(name, variant.default)
    templates = {task: task_templates(spec, config.templates_dir) for task, spec in specs.items()}
    example_sets = []
    for spec in specs.values():
        for lang in _languages_for(spec, config.languages):
            example_sets.append(load_examples(spec, lang, config.split, limit=config.limit,
                                              source=config.data_source, hub_dir=config.hub_dir,
                                              options=named))
    plan = RunPlan(config, example_sets, templates, specs, named)
    for e in external:  # --lm-eval-task: lm-eval's own tasks (harness.lmeval.external)
        plan.example_sets.append(e.example_set)
        plan.templates[e.name] = e.templates
        plan.tasks[e.name] = e.spec
        plan.prompts[e.name] = e.prompt
    return plan


def _lm_eval_tasks(config: RunConfig, specs: Mapping[str, TaskSpec]) -> list[Any]:
    """``--lm-eval-task``: lm-eval multiple_choice tasks as example sets (`harness.lmeval.external`)."""
    if not config.lm_eval_tasks:
        return []
    clash = [t for t in config.lm_eval_tasks if t in specs]
    if clash:
        raise UsageError(f"--lm-eval-task {clash[0]}: also given with --tasks; name each task once")
    if config.backend == "lm-eval":
        raise UsageError("--backend lm-eval runs lm-eval on the packaged tasks (--tasks); run an lm-eval task "
                         "with lm-eval itself, or here with --backend hf")
    from harness.lmeval.external import load_lm_eval_tasks

    return list(load_lm_eval_tasks(config.lm_eval_tasks, config.include_paths, split=config.split,
                                   limit=config.limit))


def _takes_loglikelihood(config: RunConfig) -> bool:
    """Backends known from the config alone to take log-likelihood requests (checked before a model loads;
    ``request_builder`` and ``execute`` refuse any other such backend once it exists)."""
    if config.backend == "lm-eval":
        return True
    if config.backend in ("hf", "vllm"):
        return config.prompt != "statements"
    return config.backend == "fake" and config.prompt == "lm-eval"


def _templates_all_refused(backend: str, prompt: str) -> UsageError:
    return UsageError(f"--templates all scores every statement template, but --backend {backend} with --prompt "
                      f"{prompt} scores one lm-eval prompt per task; use --prompt statements (a causal LM judging "
                      "statements) or --templates draw")


def _check_templates_mode(config: RunConfig) -> None:
    if config.templates_mode not in ("draw", "all"):
        raise UsageError(f"--templates {config.templates_mode!r}: choose draw or all")
    if config.templates_mode == "all" and _takes_loglikelihood(config):
        raise _templates_all_refused(config.backend, config.prompt)


def _check_output_dir(output_dir: str) -> None:
    """``--output`` must be (or become) a directory: an existing file there, or above it, is a usage error."""
    path = Path(output_dir).expanduser()
    for candidate in (path, *path.parents):
        if candidate.exists():
            if not candidate.is_dir():
                where = "" if candidate == path else f" ({candidate} is a file)"
                raise UsageError(f"--output {output_dir}: not a directory{where}; give a directory for the "
                                 "run folders")
            return


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", Path(text.rstrip("/")).name or text).strip("-")[:48] or "model"


def _device_type(description: str) -> str:
    """``cuda`` from ``cuda:0 (NVIDIA H100)`` / ``cuda (vLLM)``, ``cpu`` from ``cpu (AMD EPYC, 2 threads)``."""
    return re.split(r"[\s:(]", description.strip(), maxsplit=1)[0] or "unknown"


def numerics_identity(model: Mapping[str, Any], numerics: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Device type plus a backend's ``numerics`` (autocast, packing): CPU autocast bf16 and CUDA bf16 weights
    score differently, so they must not share a run. None for the CPU default (packing on, or no packing), so
    the ids of CPU runs made before this field existed stay the same (on CPU autocast = bf16, already in dtype)."""
    block = {"device": _device_type(str(model.get("device") or "")), **(numerics or {})}
    if block["device"] == "cpu" and block.get("packing", True) is True:
        return None
    return block


def run_identity(plan: RunPlan, model: dict[str, Any], prompt: str,
                 numerics: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Everything that changes the scores; equal identity = same run directory = resumable."""
    cfg = plan.config
    extra = numerics_identity(model, numerics)
    # a user's task file says how rows become examples and prompts: editing it must not resume old samples (the
    # built-in task files change with the package, whose prompt version, templates and data are in the identity)
    task_files = {name: spec.sha256 for name, spec in sorted(plan.tasks.items())
                  if spec.path is not None and spec.path.parent != BUILTIN_DIR}
    return {
        **({"numerics": extra} if extra is not None else {}),
        **({"task_files": task_files} if task_files else {}),
        "schema_version": IDENTITY_SCHEMA,
        "backend": model["backend"], "model": model["model"], "revision": model["revision"],
        "adapter": model["adapter"], "dtype": model["dtype"], "max_length": model["max_length"],
        "seed": cfg.seed, "limit": cfg.limit,
        **({"templates_mode": cfg.templates_mode} if cfg.templates_mode != "draw" else {}),
        **{name.replace("-", "_"): value for name, value in sorted(plan.task_options.items())},
        "prompt": prompt, "chat_template": cfg.chat_template, "add_bos": cfg.add_bos,
        "templates": {t: ts.sha256 for t, ts in sorted(plan.templates.items())},
        "data": [[es.task, es.language, es.split, es.rowset.source, es.rowset.sha256 or es.rowset.location]
                 for es in plan.example_sets],
    }


def run_id_for(identity: dict[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]
    return f"{identity['backend']}-{_slug(identity['model'])}-{digest}"


def _check_scores(requests: Sequence[Request], values: Sequence[float], backend: Backend) -> None:
    if len(values) != len(requests):
        raise ScoreError(f"backend {backend.name!r} returned {len(values)} scores for {len(requests)} requests")
    bad = [r for r, v in zip(requests, values, strict=True) if not math.isfinite(v)]
    if bad:
        raise ScoreError(f"backend {backend.name!r} returned NaN/inf for {len(bad)} request(s), "
                         f"first in {bad[0].example_id}; nothing from this batch was written")



def _norm_prediction(requests: Sequence[Request], values: Sequence[float]) -> int | None:
    """lm-eval's acc_norm: argmax of log-likelihood / len(choice) (characters)."""
    if not requests or not all(isinstance(r, LoglikelihoodRequest) for r in requests):
        return None
    lengths = [len(r.choice or r.continuation) if isinstance(r, LoglikelihoodRequest) else 1 for r in requests]
    return argmax([v / max(n, 1) for v, n in zip(values, lengths, strict=True)])


def score_examples(examples: Sequence[Example], builder: RequestBuilder, backend: Backend,
                   store: SampleStore, chunk_requests: int, progress: Callable[[int], object]) -> int:
    """Score in chunks; each finished chunk is appended (fsynced) before the next starts."""
    scored = 0
    i = 0
    while i < len(examples):
        chunk: list[tuple[Example, str | None, list[Request]]] = []
        n_requests = 0
        while i < len(examples) and (not chunk or n_requests < chunk_requests):
            template_id, requests = builder.build(examples[i])
            if not requests:
                raise UsageError(f"{examples[i].example_id}: no requests were built (empty candidate list)")
            chunk.append((examples[i], template_id, list(requests)))
            n_requests += len(requests)
            i += 1
        flat: list[Request] = [r for _, _, reqs in chunk for r in reqs]
        scores = backend.score(flat)
        values = [s.value for s in scores]
        _check_scores(flat, values, backend)
        samples = []
        pos = 0
        assemble = getattr(builder, "assemble", None)  # builders whose requests are not one per candidate
        for example, template_id, reqs in chunk:
            these = scores[pos:pos + len(reqs)]
            pos += len(reqs)
            if assemble is not None:
                samples.append(assemble(example, reqs, these))
                continue
            vals = tuple(s.value for s in these)
            greedy = [s.greedy for s in these]
            samples.append(Sample(
                example_id=example.example_id, task=example.task, language=example.language,
                split=example.split, index=example.index, template_id=template_id,
                requests=tuple(request_record(r) for r in reqs),
                scores=vals, prediction=argmax(vals), gold=example.gold,
                truncated=sum(1 for s in these if s.truncated), prediction_norm=_norm_prediction(reqs, vals),
                extra={"greedy": greedy} if any(g is not None for g in greedy) else {}))
        store.append(samples)
        scored += len(samples)
        progress(len(samples))
    return scored


def evaluate_example_sets(pending: Sequence[ExampleSet], evaluator: SampleEvaluator, store: SampleStore,
                          progress: Callable[[int], object]) -> int:
    """Backends that run a whole evaluation themselves (the lm-eval bridge) return finished Samples."""
    scored = 0
    for es in pending:
        samples = [s for s in evaluator.evaluate([es]) if s.example_id not in store]
        for s in samples:
            if any(not math.isfinite(v) for v in s.scores):
                raise ScoreError(f"backend {evaluator.name!r} returned NaN/inf for {s.example_id}")
        store.append(samples)
        scored += len(samples)
        progress(len(samples))
    return scored


def _task_results(plan: RunPlan, store: SampleStore, prompt: str) -> dict[str, TaskResult]:
    results: dict[str, TaskResult] = {}
    for task in dict.fromkeys((*plan.config.tasks, *plan.config.lm_eval_tasks)):
        langs: dict[str, LanguageResult] = {}
        accs, norms = [], []
        spec = plan.tasks.get(task)
        split = spec.default_split if spec is not None else ""
        for es in (e for e in plan.example_sets if e.task == task):
            split = es.split
            samples = [store.samples[ex.example_id] for ex in es.examples]
            acc = accuracy([s.correct for s in samples])
            accs.append(acc)
            norm_flags = [s.correct_norm for s in samples]
            norm = accuracy([bool(f) for f in norm_flags]) if norm_flags and None not in norm_flags else None
            if norm is not None:
                norms.append(norm)
            langs[es.language] = LanguageResult(
                language=es.language, n=acc.n, n_rows=es.n_rows, accuracy=acc.accuracy, stderr=acc.stderr,
                ci95_low=acc.ci95_low, ci95_high=acc.ci95_high, truncated=sum(s.truncated for s in samples),
                data_source=es.rowset.source, data_location=es.rowset.location, data_sha256=es.rowset.sha256,
                data_derived=es.rowset.derived, acc_norm=norm.accuracy if norm else None,
                acc_norm_stderr=norm.stderr if norm else None)
        mean = mean_over_languages(accs)
        mean_norm = mean_over_languages(norms) if norms and len(norms) == len(accs) else None
        tset = plan.templates[task]
        sensitivity = None
        if plan.config.templates_mode == "all":
            sensitivity = template_sensitivity(
                {es.language: [store.samples[ex.example_id] for ex in es.examples]
                 for es in plan.example_sets if es.task == task},
                [t.id for t in tset.templates], {t.id: t.group for t in tset.templates}, tset.group_field,
                ENSEMBLE_RULE)
        results[task] = TaskResult(
            task=task, split=split, metric="acc", languages=langs, mean_accuracy=mean.accuracy,
            mean_stderr=mean.stderr, mean_ci95_low=mean.ci95_low, mean_ci95_high=mean.ci95_high,
            n_languages=mean.n_languages, n_examples=mean.n_examples,
            templates={"path": tset.path, "version": tset.version, "sha256": tset.sha256,
                       "ids": [t.id for t in tset.templates]} if prompt.startswith("statements") else {},
            prompt=prompt,
            mean_acc_norm=mean_norm.accuracy if mean_norm else None,
            mean_acc_norm_ci95_low=mean_norm.ci95_low if mean_norm else None,
            mean_acc_norm_ci95_high=mean_norm.ci95_high if mean_norm else None,
            title=spec.title if spec is not None else None, chance=_chance(spec, plan, task),
            task_file={"path": str(spec.path), "sha256": spec.sha256} if spec is not None else None,
            template_sensitivity=sensitivity)
    return results


def _chance(spec: TaskSpec | None, plan: RunPlan, task: str) -> float | None:
    """Chance accuracy (%): 100 / candidates, averaged over the examples when their number varies."""
    if spec is not None and spec.chance is not None:
        return spec.chance
    sizes = [len(ex.candidates) for es in plan.example_sets if es.task == task for ex in es.examples]
    return sum(100.0 / n for n in sizes) / len(sizes) if sizes else None


def request_builder(plan: RunPlan, kind: RequestKind) -> RequestBuilder:
    """Statements for statement scorers (encoders, LLM judge mode); lm-eval prompts for log-likelihood."""
    if kind == "statement":
        if plan.config.templates_mode == "all":
            return AllTemplatesRequestBuilder(plan.templates)
        return StatementRequestBuilder(plan.templates, plan.config.seed)
    if plan.config.templates_mode == "all":
        raise _templates_all_refused(plan.config.backend, plan.config.prompt)
    if kind == "loglikelihood":
        from harness.prompts.lm_eval_prompts import LMEvalRequestBuilder

        return LMEvalRequestBuilder(plan.tasks, plan.prompts)
    raise UsageError(f"backend {plan.config.backend!r} needs {kind!r} requests, which no task builds")


def create_backend(cfg: RunConfig) -> Backend:
    return backend_registry.create(cfg.backend, BackendConfig(
        model=cfg.model, adapter=cfg.adapter, dtype=cfg.dtype, device=cfg.device, batch_size=cfg.batch_size,
        seed=cfg.seed, threads=cfg.threads, max_length=cfg.max_length, prompt=cfg.prompt,
        chat_template=cfg.chat_template, add_bos=cfg.add_bos, trust_remote_code=cfg.trust_remote_code,
        options=backend_registry.parse_options(cfg.backend, dict(cfg.backend_options))))


@dataclass
class RunOutcome:
    result: RunResult
    result_path: Path
    samples_path: Path
    scored_now: int  # by every process together
    resumed: int
    rank: int = 0  # data-parallel: this process's rank (only rank 0 reports)
    world_size: int = 1


@contextmanager
def _run_lock_all_ranks(run_dir: Path, here: distributed.World) -> Iterator[None]:
    """Rank 0 holds the run lock for every process; when it cannot, every rank fails with its one-line error
    (a second launch of a running run is refused everywhere, not only where the lock lives)."""
    if here.world_size == 1:
        with run_lock(run_dir):
            yield
        return
    with ExitStack() as stack:
        refused: str | None = None
        if here.is_main:
            try:
                stack.enter_context(run_lock(run_dir))
            except UsageError as err:
                refused = str(err)
        refused = distributed.broadcast(here, refused)
        if refused is not None:
            distributed.barrier(here)  # every rank reports before any exits (a launcher stops the rest)
            raise UsageError(refused)
        yield


def _pending_ids(plan: RunPlan, store: SampleStore) -> list[list[str]]:
    """Per example set, in plan order, the ids not yet in the samples file (the same list on every rank)."""
    return [[ex.example_id for ex in es.examples if ex.example_id not in store] for es in plan.example_sets]


def execute(plan: RunPlan, backend: Backend | None = None, *, show_progress: bool = True,
            environment: Callable[[], dict[str, Any]] | None = None,
            chunk_requests: int | None = None) -> RunOutcome:
    """Create the backend (unless given), score missing samples, and write the result file.

    Under torchrun / ``accelerate launch`` every process plans and loads the same model, scores every
    world_size-th pending example of each example set into its own ``samples.rank{R}.jsonl``, and rank 0 merges
    those into ``samples.jsonl`` and writes the result file (the one a single process would write, plus
    ``world_size``)."""
    here = distributed.world()  # joins the other processes first: waiting for them is not model loading
    try:
        outcome = _execute(plan, here, backend, show_progress, environment, chunk_requests)
    except BaseException:
        distributed.leave(here, wait=False)
        raise
    distributed.leave(here)
    return outcome


def _execute(plan: RunPlan, here: distributed.World, backend: Backend | None, show_progress: bool,
             environment: Callable[[], dict[str, Any]] | None, chunk_requests: int | None) -> RunOutcome:
    cfg = plan.config
    started = time.perf_counter()
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    if backend is None:
        device = distributed.device_for(cfg.device, here)
        backend = create_backend(cfg if device == cfg.device else replace(cfg, device=device))
    evaluator = backend if isinstance(backend, SampleEvaluator) else None
    if evaluator is not None and here.world_size > 1:
        raise UsageError(f"--backend {cfg.backend} runs a whole evaluation itself and does not split it across "
                         f"{here.world_size} processes; run it as one process")
    if evaluator is not None and cfg.templates_mode == "all":
        raise _templates_all_refused(cfg.backend, cfg.prompt)
    builder = None if evaluator is not None else request_builder(plan, backend.request_kind)
    if evaluator is not None:
        prompt = evaluator.prompt_version
    else:
        assert builder is not None
        # a backend may wrap the built requests in a prompt of its own (an LLM judging statements)
        backend_prompt = backend.prompt_version
        prompt = f"{builder.version}+{backend_prompt}" if backend_prompt else builder.version
    load_seconds = time.perf_counter() - started
    model = asdict(backend.info())
    identity = run_identity(plan, model, prompt, backend.numerics)
    run_id = run_id_for(identity)
    run_dir = Path(cfg.output_dir) / run_id
    with _run_lock_all_ranks(run_dir, here):
        samples_path = run_dir / SAMPLES_FILE
        planned = [ex for es in plan.example_sets for ex in es.examples]
        order = [ex.example_id for ex in planned]
        store: SampleStore | None = None
        pending_ids: list[list[str]] = []
        if here.is_main:
            store = SampleStore(samples_path)
            # samples of ranks of an earlier, killed data-parallel run (any process count) are done too
            merge_samples(store, distributed.rank_sample_files(run_dir), order)
            pending_ids = _pending_ids(plan, store)
        pending_ids = distributed.broadcast(here, pending_ids)
        n_pending = sum(len(ids) for ids in pending_ids)
        resumed = len(planned) - n_pending
        # one process writes samples.jsonl itself, as it always has; each of several writes a file of its own
        writer = store if here.world_size == 1 else SampleStore(run_dir / distributed.rank_samples_file(here.rank))
        assert writer is not None
        by_id = {ex.example_id: ex for ex in planned}
        shards = [distributed.shard(ids, here) for ids in pending_ids]
        chunk_requests = chunk_requests or max(cfg.batch_size * 8, 256)
        scoring_started = time.perf_counter()
        scored_now = 0
        total, initial = ((len(planned), resumed) if here.world_size == 1
                          else (sum(len(s) for s in shards), 0))  # rank 0 shows its own shard
        desc = run_id if here.world_size == 1 else f"{run_id} [rank 0 of {here.world_size}]"
        with tqdm(total=total, initial=initial, desc=desc, unit="ex", leave=False,
                  disable=not show_progress or not here.is_main) as bar:
            for es, mine in zip(plan.example_sets, shards, strict=True):
                if not mine:
                    continue
                bar.set_postfix_str(f"{es.task}/{es.language}")
                if evaluator is not None:
                    scored_now += evaluate_example_sets([es], evaluator, writer, bar.update)
                else:
                    assert builder is not None
                    pending = [by_id[example_id] for example_id in mine]
                    scored_now += score_examples(pending, builder, backend, writer, chunk_requests, bar.update)
        if here.world_size > 1:
            distributed.barrier(here)  # every shard is on disk
            scored_now = n_pending
        if not here.is_main:
            # rank 0 merges, writes the result file and sends it; the lock is its to release
            sent: RunResult | None = distributed.broadcast(here, None)
            assert sent is not None
            return RunOutcome(sent, run_dir / RESULT_FILE, samples_path, scored_now, resumed,
                              here.rank, here.world_size)
        assert store is not None
        if here.world_size > 1:
            merge_samples(store, distributed.rank_sample_files(run_dir), order)
        scoring_seconds = time.perf_counter() - scoring_started
        env = environment() if environment is not None else _environment()
        result = RunResult(
            schema_version=SCHEMA_VERSION, run_id=run_id,
            config={**asdict(cfg), "tasks": list(cfg.tasks),
                    "languages": list(cfg.languages) if cfg.languages else None,
                    "identity": identity},
            model=model, environment=env, tasks=_task_results(plan, store, prompt), samples_file=SAMPLES_FILE,
            timing={"started_at": started_at, "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
                    "wall_seconds": round(time.perf_counter() - started, 3),
                    "model_load_seconds": round(load_seconds, 3), "scoring_seconds": round(scoring_seconds, 3),
                    "examples_scored_now": scored_now, "examples_resumed": resumed,
                    "examples_per_second": round(scored_now / scoring_seconds, 3) if scoring_seconds > 0 else None},
            world_size=here.world_size)
        result_path = run_dir / RESULT_FILE
        write_result(result_path, result)
        distributed.broadcast(here, result)
        return RunOutcome(result, result_path, samples_path, scored_now, resumed, here.rank, here.world_size)


def _environment() -> dict[str, Any]:
    from harness.device import environment

    return environment()

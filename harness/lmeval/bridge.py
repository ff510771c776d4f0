"""`bench run --backend lm-eval`: lm-evaluation-harness's own evaluation on our packaged data.

`LMEvalBackend.evaluate(example_sets)` writes lm-eval task YAMLs for the example sets (`harness.lmeval.task_yaml`:
lm-eval's own configs reading local JSON Lines files with exactly the selected rows), runs
``lm_eval.simple_evaluate`` with lm-eval's ``hf`` model (HFLM, built exactly as ``simple_evaluate`` builds it from
``model="hf"`` and ``model_args``), and converts every logged sample into a `harness.core.Sample`:

- ``example_id``: ``<task>/<lang>/<split>/<row index>`` (the `Example` the doc was written from);
- ``template_id``: ``lm-eval-0.4.13`` (the prompt version the ``hf`` backend's lm-eval prompts carry; with
  another lm-eval installed, its version);
- ``requests``: lm-eval's ``(context, continuation)`` per request (``Instance.args``);
- ``scores``: lm-eval's summed continuation log-likelihood per choice;
- ``prediction``: lm-eval's ``acc`` prediction (``np.argmax`` of the log-likelihoods);
- ``prediction_norm`` (and ``extra["acc_norm_prediction"]``): lm-eval's ``acc_norm`` prediction,
  ``argmax(ll / len(doc_to_choice[i]))``;
- ``gold``: lm-eval's gold index (0-based), checked against the `Example`'s;
- ``truncated``: requests longer than HFLM's ``max_length + 1`` tokens (HFLM cuts them from the left);
- ``extra``: ``greedy`` (lm-eval's is_greedy per request), lm-eval's own per-sample ``acc``/``acc_norm`` flags
  (checked against the predictions), its task name and doc id.

``--dtype auto`` keeps lm-eval's own default (HFLM ``dtype="auto"``: the checkpoint's dtype, float32 for the
dequantised presets) rather than the harness's CPU/GPU dtype policy, since this backend gives reference numbers;
an explicit ``--dtype`` is passed through. The runner calls ``evaluate`` instead of building requests when a
backend has it; ``score`` is refused.
"""

from __future__ import annotations

import logging
import math
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from harness.backends.base import BackendConfig, ModelInfo
from harness.backends.options import LMEvalOptions
from harness.core import Example, Request, RequestKind, Sample, Score, argmax
from harness.errors import BenchError, ModelError, ScoreError, UsageError, one_line
from harness.lmeval import lm_eval_version, require_lm_eval, version_notes
from harness.lmeval import task_yaml as ty
from harness.tasks.examples import ExampleSet
from harness.tasks.registry import get_task

# the prompt format, as the `hf` backend's LMEvalRequestBuilder names it (lm-eval 0.4.13 zero-shot prompts);
# with another lm-eval installed the bridge records that version instead (its configs build the prompts)
TEMPLATE_ID = "lm-eval-0.4.13"


def prompt_version() -> str:
    return f"lm-eval-{lm_eval_version()}" if lm_eval_version() else TEMPLATE_ID



def lmeval_token_split(lm: Any, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """The (context, continuation) token ids HFLM scores for a request: the branch of lm-eval's
    ``TemplateLM.loglikelihood`` (prefix token as context when the context is empty), else ``_encode_pair``."""
    if context == "":
        cont = list(lm.tok_encode(continuation, add_special_tokens=False))
        if lm.prefix_token_id != cont[0]:
            return [lm.prefix_token_id], cont
        return cont[:1], cont[1:]
    ctx_enc, cont_enc = lm._encode_pair(context, continuation)
    return list(ctx_enc), list(cont_enc)


def _doc_rows(es: ExampleSet, examples: Sequence[Example]) -> list[dict[str, Any]]:
    """The rows lm-eval reads for ``examples`` (the example set's rows, at each example's index)."""
    rows = es.rowset.rows
    spec = get_task(es.task)  # once, not per row
    docs = []
    for ex in examples:
        if not 0 <= ex.index < len(rows):
            raise UsageError(f"{ex.example_id}: row {ex.index} is not in {es.rowset.location}")
        # the example's doc carries what a --task-option variant changed (e.g. a corrected field)
        docs.append(ty.to_lmeval_doc(spec, dict(ex.doc) if ex.doc else rows[ex.index]))
    return docs


class LMEvalBackend:
    """Runs lm-eval 0.4.13 (HFLM) itself; see the module doc."""

    name: ClassVar[str] = "lm-eval"
    request_kind: RequestKind = "loglikelihood"

    def __init__(self, config: BackendConfig) -> None:
        require_lm_eval()
        if config.prompt not in ("default", "lm-eval"):
            raise UsageError(f"backend 'lm-eval' builds lm-eval's own prompts; --prompt {config.prompt!r} "
                             "is not available (use --backend hf for statement prompts)")
        try:
            import lm_eval  # noqa: F401
            from lm_eval.api.registry import get_model
        except ImportError as err:
            raise UsageError(f"the lm-eval backend cannot import lm-eval ({err}): "
                             "pip install 'statement-bench[lmeval]'") from None
        import torch

        from harness.device import describe_device, dtype_name, resolve_device, resolve_dtype
        from harness.models.materialise import resolve_model
        from harness.models.presets import DEFAULT_CAUSAL
        from harness.models.quiet import hf_quiet

        self.config = config
        self.options = LMEvalOptions.parse(config.options)
        self.ref = config.model or DEFAULT_CAUSAL
        self.resolved = resolve_model(self.ref)
        if config.threads:
            torch.set_num_threads(config.threads)
        device = resolve_device(config.device)
        self.device = device
        # --dtype auto: lm-eval's own default (HFLM dtype="auto": the checkpoint's dtype; float32 for the
        # dequantised presets), not the harness's CPU/GPU policy: this backend gives reference numbers
        auto = self._dtype_auto = (config.dtype or "auto").strip().lower() == "auto"
        requested = "auto" if auto else dtype_name(resolve_dtype(config.dtype, device))
        self.device_label = describe_device(device)
        device_arg = str(device) if device.type != "cuda" or device.index is not None else "cuda:0"
        self.model_args: dict[str, Any] = {"pretrained": self.resolved.path, "dtype": requested}
        if config.max_length is not None:
            self.model_args["max_length"] = config.max_length
        if config.add_bos is not None:
            self.model_args["add_bos_token"] = config.add_bos
        if config.trust_remote_code:
            self.model_args["trust_remote_code"] = True
        if config.adapter:
            self.model_args["peft"] = config.adapter
        self.model_args.update(dict(self.options.model_args))
        self.batch_size = config.batch_size
        self.device_arg = device_arg
        _quiet_lm_eval()
        try:
            with hf_quiet():
                # exactly what simple_evaluate(model="hf", model_args=..., batch_size=..., device=...) builds
                self.lm = get_model("hf").create_from_arg_obj(
                    self.model_args, {"batch_size": config.batch_size, "max_batch_size": None,
                                      "device": device_arg})
        except BenchError:
            raise
        except Exception as err:  # lm-eval/transformers raise many types; the CLI needs one line
            raise ModelError(f"lm-eval could not load model {self.ref} ({self.resolved.path}): "
                             f"{one_line(err)}") from err
        self.dtype = dtype_name(next(self.lm.model.parameters()).dtype)
        work = self.options.work_dir
        self._own_work_dir = work is None
        self.work_dir = Path(work) if work else Path(tempfile.mkdtemp(prefix="statement-bench-lmeval-"))
        self.last_results: dict[str, Any] | None = None

    # --------------------------------------------------------------------------------------------- backend API

    @property
    def prompt_version(self) -> str:
        """The run's prompt format (SampleEvaluator): lm-eval's own prompts, by its version."""
        return prompt_version()

    @property
    def numerics(self) -> Mapping[str, Any] | None:
        return None  # lm-eval's own HFLM computes the scores; dtype and device are in the identity

    def info(self) -> ModelInfo:
        model = self.lm.model
        n_params = sum(p.numel() for p in model.parameters())
        notes = (f"lm-eval {lm_eval_version() or '?'} HFLM (simple_evaluate, model='hf', zero-shot, "
                 f"batch_size={self.batch_size})",
                 "prompts, tokenisation and log-likelihoods are lm-eval's own; "
                 "task configs copied from lm-eval with local data files",
                 *(("dtype auto: lm-eval's default, the checkpoint's dtype",) if self._dtype_auto else ()),
                 *self.resolved.notes, *version_notes())
        return ModelInfo(backend=self.name, model=self.ref, path=self.resolved.path, revision=self.resolved.revision,
                         adapter=self.config.adapter, dtype=self.dtype, device=self.device_label,
                         num_parameters=n_params, max_length=int(self.lm.max_length),
                         threads=self.config.threads, notes=notes)

    def score(self, requests: Sequence[Request]) -> list[Score]:
        raise UsageError("backend 'lm-eval' evaluates whole example sets through lm-eval (evaluate()); "
                         "it does not score individual requests")

    def close(self) -> None:
        if self._own_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    # ------------------------------------------------------------------------------------------------ evaluate

    def write_tasks(self, example_sets: Sequence[ExampleSet]) -> dict[str, tuple[ExampleSet, list[Example]]]:
        """One lm-eval task per example set (YAML + data with exactly its examples' rows)."""
        tasks: dict[str, tuple[ExampleSet, list[Example]]] = {}
        for es in example_sets:
            examples = list(es.examples)
            if not examples:
                continue
            name = ty.write_task(self.work_dir, es.task, es.language, es.split, _doc_rows(es, examples))
            if name in tasks:
                raise UsageError(f"{es.task}/{es.language} appears twice in one lm-eval evaluation")
            tasks[name] = (es, examples)
        return tasks

    def evaluate(self, example_sets: Sequence[ExampleSet]) -> list[Sample]:
        """Run lm-eval on the example sets; one `Sample` per example, in the order given."""
        tasks = self.write_tasks(example_sets)
        if not tasks:
            return []
        raw = self.run_lm_eval(list(tasks))
        samples: list[Sample] = []
        for name, (_es, examples) in tasks.items():
            logged = sorted(raw["samples"].get(name, []), key=lambda s: int(s["doc_id"]))
            if len(logged) != len(examples):
                raise ScoreError(f"lm-eval returned {len(logged)} samples for {name}, expected {len(examples)}")
            task_obj = raw["task_objects"][name]
            for example, entry in zip(examples, logged, strict=True):
                samples.append(self.to_sample(task_obj, name, example, entry))
        return samples

    def run_lm_eval(self, names: list[str]) -> dict[str, Any]:
        """``simple_evaluate`` on our generated tasks; returns its result with ``task_objects`` added."""
        from lm_eval import simple_evaluate
        from lm_eval.tasks import TaskManager

        _quiet_lm_eval()
        tm = TaskManager(include_path=str(self.work_dir), include_defaults=False)
        loaded = tm.load(names)["tasks"]
        missing = [n for n in names if n not in loaded]
        if missing:
            raise UsageError(f"lm-eval did not load the generated task(s) {', '.join(missing)}")
        results = simple_evaluate(model=self.lm, tasks=[loaded[n] for n in names], task_manager=tm,
                                  batch_size=self.batch_size, device=self.device_arg, limit=None,
                                  log_samples=True, bootstrap_iters=0,
                                  apply_chat_template=self.config.chat_template)
        if results is None or "samples" not in results:
            raise ScoreError("lm-eval returned no per-sample results")
        self.last_results = {k: v for k, v in results.items() if k != "samples"}
        return {**results, "task_objects": loaded}

    def to_sample(self, task_obj: Any, name: str, example: Example, entry: Mapping[str, Any]) -> Sample:
        """One lm-eval logged sample -> `Sample` (see the module doc)."""
        return convert_sample(task_obj, name, example, entry, self.lm, template_id=self.prompt_version)


def lmeval_gold(task_obj: Any, doc: Mapping[str, Any]) -> int:
    """lm-eval's gold index for a multiple-choice doc (``ConfigurableTask.process_results``)."""
    choices = task_obj.doc_to_choice(doc)
    gold = task_obj.doc_to_text(doc) if task_obj.multiple_input else task_obj.doc_to_target(doc)
    if isinstance(gold, str):
        gold = choices.index(gold) if gold in choices else -100
    if not isinstance(gold, int) or not 0 <= gold < len(choices):
        raise ScoreError(f"{task_obj.config.task}: lm-eval gold {gold!r} is not a choice index")
    return int(gold)


def convert_sample(task_obj: Any, name: str, example: Example, entry: Mapping[str, Any], lm: Any = None,
                   template_id: str = TEMPLATE_ID) -> Sample:
    """Convert one of lm-eval's logged samples (``results["samples"][task][i]``) for ``example``."""
    doc = entry["doc"]
    pairs = [(str(a[0]), str(a[1])) for a in entry["arguments"]]
    resps = [(float(r[0]), bool(r[1])) for r in entry["filtered_resps"]]
    if len(pairs) != len(resps) or not resps:
        raise ScoreError(f"{example.example_id}: lm-eval logged {len(pairs)} requests and {len(resps)} responses")
    lls = [ll for ll, _ in resps]
    if any(not math.isfinite(v) for v in lls):
        raise ScoreError(f"{example.example_id}: lm-eval returned a non-finite log-likelihood")
    choices = task_obj.doc_to_choice(doc)
    if len(choices) != len(lls):
        raise ScoreError(f"{example.example_id}: {len(choices)} choices but {len(lls)} log-likelihoods")
    pred = argmax(lls)
    pred_norm = argmax([ll / float(len(c)) for ll, c in zip(lls, choices, strict=True)])
    gold = lmeval_gold(task_obj, doc)
    if gold != example.gold:
        raise ScoreError(f"{example.example_id}: lm-eval's gold is {gold}, the example's is {example.gold} "
                         "(the doc written for lm-eval does not match the example)")
    for metric, p in (("acc", pred), ("acc_norm", pred_norm)):
        flag = entry.get(metric)
        if flag is not None and bool(float(flag)) != (p == gold):
            raise ScoreError(f"{example.example_id}: lm-eval's {metric}={flag} disagrees with prediction {p}")
    truncated = 0
    if lm is not None:
        limit = int(lm.max_length) + 1
        for ctx, cont in pairs:
            c, k = lmeval_token_split(lm, ctx, cont)
            truncated += int(len(c) + len(k) > limit)
    extra: dict[str, object] = {
        "acc_norm_prediction": pred_norm,
        "greedy": [g for _, g in resps],
        "lm_eval_task": name,
        "lm_eval_doc_id": int(entry["doc_id"]),
        "lm_eval_acc": entry.get("acc"),
        "lm_eval_acc_norm": entry.get("acc_norm"),
    }
    return Sample(example_id=example.example_id, task=example.task, language=example.language,
                  split=example.split, index=example.index, template_id=template_id, requests=tuple(pairs),
                  scores=tuple(lls), prediction=pred, gold=gold, truncated=truncated, prediction_norm=pred_norm,
                  extra=extra)


def _quiet_lm_eval() -> None:
    """lm-eval logs every task and seed at INFO; keep warnings and errors only."""
    for name in ("lm_eval", "lm-eval"):
        logging.getLogger(name).setLevel(logging.WARNING)


__all__ = ["TEMPLATE_ID", "LMEvalBackend", "convert_sample", "lmeval_gold", "lmeval_token_split", "prompt_version"]

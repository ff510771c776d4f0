"""Log-likelihood requests identical to lm-evaluation-harness 0.4.13 (zero-shot, no chat template).

Each task file's ``lm_eval:`` block says the prompt in lm-eval's own terms, and this module applies them with
lm-eval's ``ConfigurableTask`` semantics for a ``multiple_choice`` task:

- ``doc_to_text`` / ``doc_to_choice`` / ``doc_to_target``: a field name of the doc (the row), a Jinja template
  rendered with lm-eval's environment (``StrictUndefined``, trailing newlines kept; a ``doc_to_choice``
  template renders a Python list literal; an all-digit ``doc_to_text`` becomes an int), a fixed list, or a
  ``!function`` called with the doc. Templates also see ``lit``: the task's per-language literals.
- zero-shot context = ``doc_to_text``; requests = ``(context, target_delimiter + choice)`` per choice, or, when
  ``doc_to_text`` gives an int ("multiple input", Winograd-style partial scoring), ``(choice,
  target_delimiter + doc_to_target)`` per choice.
- ``task:`` reuses an installed lm-eval task's own ``doc_to_*`` (its ``!function``s are lm-eval's code).

``LoglikelihoodRequest.choice`` is lm-eval's ``doc_to_choice`` string for that candidate: ``process_results``
computes ``acc_norm = argmax(loglik / len(choice))`` over those strings (characters, without the delimiter).

Chat templates are not applied here: a causal-LM backend wraps the context itself (``--chat-template``) and
drops the target delimiter, as lm-eval does with ``--apply_chat_template``.
"""

from __future__ import annotations

import ast
import functools
import re
from collections.abc import Mapping
from typing import Any, ClassVar

from harness.core import Example, LoglikelihoodRequest, Request, RequestKind
from harness.errors import BenchError, DataError, UsageError, one_line
from harness.tasks.specs import get_task
from harness.tasks.taskfile import FunctionRef, LMEvalPrompt, TaskSpec

PROMPT_VERSION = "lm-eval-0.4.13"
#: ConfigurableTask's default ``target_delimiter``.
TARGET_DELIMITER = " "


def _regex_replace(string: str, pattern: str, repl: str, count: int = 0) -> str:
    return re.sub(pattern, repl, string, count=count)


@functools.cache
def _jinja() -> Any:
    """lm-eval's own Jinja environment (``lm_eval/utils.py``)."""
    from jinja2 import BaseLoader, Environment, StrictUndefined

    env = Environment(loader=BaseLoader, undefined=StrictUndefined,  # type: ignore[arg-type]  # as lm-eval does
                      keep_trailing_newline=True)
    env.filters["regex_replace"] = _regex_replace
    return env


@functools.lru_cache(maxsize=512)
def _template(source: str) -> Any:
    return _jinja().from_string(source)


Triple = tuple[str, str, str]  # (context, continuation without the delimiter, acc_norm choice)


class TaskPrompt:
    """One task's lm-eval prompt, ready to turn docs into (context, continuation, choice) triples."""

    def __init__(self, spec: TaskSpec) -> None:
        self.task = spec.name
        prompt = spec.lm_eval
        if prompt is None or not prompt.declared:
            raise UsageError(f"task {spec.name!r} has no causal-LM prompt: add an `lm_eval:` block with doc_to_text "
                             f"and doc_to_choice (or `task:` to reuse an lm-eval task) to {spec.path}")
        self.literals: Mapping[str, Mapping[str, Any]] = prompt.literals
        if prompt.reuse is not None:
            self._from_lm_eval(prompt)
        else:
            self.doc_to_text: Any = self._callable(prompt.doc_to_text)
            self.doc_to_choice: Any = self._callable(prompt.doc_to_choice)
            self.doc_to_target: Any = self._callable(prompt.doc_to_target)
            self.target_delimiter = prompt.target_delimiter
        self.source = f"lm-eval task {prompt.reuse}" if prompt.reuse else f"task file {spec.path}"

    def _from_lm_eval(self, prompt: LMEvalPrompt) -> None:
        from harness.lmeval.task_yaml import FunctionRef as UpstreamRef
        from harness.lmeval.task_yaml import find_upstream_config

        assert prompt.reuse is not None
        cfg = find_upstream_config(prompt.reuse, prompt.reuse_config)
        if cfg.get("output_type") != "multiple_choice":
            raise UsageError(f"lm-eval task {prompt.reuse!r} is {cfg.get('output_type')!r}, not multiple_choice: "
                             "its prompt cannot score candidates")
        for key in ("description", "gen_prefix", "process_docs"):
            if cfg.get(key):
                raise UsageError(f"lm-eval task {prompt.reuse!r} has `{key}`, which a task file cannot reuse; "
                                 f"run it with --lm-eval-task {prompt.reuse}")

        def resolve(value: Any) -> Any:
            if isinstance(value, UpstreamRef):
                import importlib

                module, _, fn = value.qualname.rpartition(".")
                return getattr(importlib.import_module(module), fn)
            return value

        self.doc_to_text = resolve(cfg.get("doc_to_text", ""))
        self.doc_to_choice = resolve(cfg.get("doc_to_choice"))
        self.doc_to_target = resolve(cfg.get("doc_to_target"))
        self.target_delimiter = str(cfg.get("target_delimiter", TARGET_DELIMITER))

    @staticmethod
    def _callable(value: Any) -> Any:
        return value.resolve() if isinstance(value, FunctionRef) else value

    # -- ConfigurableTask.doc_to_text / doc_to_choice / doc_to_target (lm-eval 0.4.13) -------------------------

    def _render(self, template: str, doc: Mapping[str, Any]) -> str:
        return str(_template(template).render(**doc))

    def _from_string(self, spec: str, doc: Mapping[str, Any], features: set[str], *, lists: bool = False) -> Any:
        """A field of the doc, or the rendered template: an all-digit result is an int, and (targets) a list
        literal is a list, as lm-eval reads them."""
        if spec in features:
            return doc[spec]
        rendered = self._render(spec, doc)
        if rendered.isdigit():
            return ast.literal_eval(rendered)
        if lists and len(rendered) >= 2 and rendered[0] == "[" and rendered[-1] == "]":
            try:
                return ast.literal_eval(rendered)
            except (SyntaxError, ValueError):
                return rendered
        return rendered

    def text(self, doc: Mapping[str, Any], features: set[str]) -> str | int:
        spec = self.doc_to_text
        if isinstance(spec, int):
            return spec
        if isinstance(spec, str):
            return self._from_string(spec, doc, features)
        if callable(spec):
            return spec(doc)
        raise UsageError(f"task {self.task!r}: lm_eval.doc_to_text must be a field, a template or !function")

    def choices(self, doc: Mapping[str, Any], features: set[str]) -> list[str]:
        spec = self.doc_to_choice
        if isinstance(spec, str):
            if spec in features:
                return list(doc[spec])
            return list(ast.literal_eval(self._render(spec, doc)))
        if isinstance(spec, list):
            return list(spec)
        if isinstance(spec, dict):
            return list(spec.values())
        if callable(spec):
            return list(spec(doc))
        raise UsageError(f"task {self.task!r}: lm_eval.doc_to_choice must be a field, a template, a list or "
                         "!function")

    def target(self, doc: Mapping[str, Any], features: set[str]) -> Any:
        spec = self.doc_to_target
        if isinstance(spec, int):
            return spec
        if isinstance(spec, str):
            return self._from_string(spec, doc, features, lists=True)
        if isinstance(spec, list):
            return spec
        if callable(spec):
            return spec(doc)
        raise UsageError(f"task {self.task!r}: a multiple-input prompt needs lm_eval.doc_to_target")

    # -- requests ------------------------------------------------------------------------------------------------

    def doc_for(self, example: Example) -> tuple[dict[str, Any], set[str]]:
        """The doc templates see (the row, plus ``lit`` when the task has literals) and its feature names."""
        doc: dict[str, Any] = dict(example.doc) if example.doc else dict(example.fields)
        features = set(doc)
        if self.literals:
            lit = self.literals.get(example.language)
            if lit is None:
                raise UsageError(f"lm-eval {PROMPT_VERSION} has no {example.task} prompt for language "
                                 f"{example.language!r}; it has: {' '.join(sorted(self.literals))}")
            doc["lit"] = lit
        return doc, features

    def triples(self, example: Example) -> list[Triple]:
        doc, features = self.doc_for(example)
        step = "doc_to_text"
        try:
            context = self.text(doc, features)
            step = "doc_to_choice"
            choices = self.choices(doc, features)
            if isinstance(context, int):  # multiple input: each choice is a context, the target is shared
                step = "doc_to_target"
                target = str(self.target(doc, features))
                return [(str(c), target, str(c)) for c in choices]
        except BenchError:
            raise
        except Exception as err:  # a template or a user's function failed on this doc
            raise DataError(f"{example.example_id}: lm_eval.{step} ({self.source}) failed: {one_line(err)}") \
                from None
        if not isinstance(context, str):
            raise DataError(f"{example.example_id}: lm_eval.doc_to_text gave {type(context).__name__}, not text")
        return [(context, str(c), str(c)) for c in choices]


_PROMPTS: dict[tuple[str, str, str], TaskPrompt] = {}


def _prompt_for(spec: TaskSpec) -> TaskPrompt:
    key = (spec.name, str(spec.path), spec.sha256)
    if key not in _PROMPTS:
        _PROMPTS[key] = TaskPrompt(spec)
    return _PROMPTS[key]


class LMEvalRequestBuilder:
    """task -> example -> lm-eval 0.4.13's zero-shot loglikelihood requests (one per candidate)."""

    kind: RequestKind = "loglikelihood"
    version: str = PROMPT_VERSION
    PROMPT_VERSION: ClassVar[str] = PROMPT_VERSION

    def __init__(self, tasks: Mapping[str, TaskSpec] | None = None, prompts: Mapping[str, Any] | None = None) -> None:
        self.tasks = dict(tasks or {})
        self.prompts = dict(prompts or {})  # ready prompt objects by task (e.g. lm-eval's own task objects)

    def prompt(self, task: str) -> Any:
        if task in self.prompts:
            return self.prompts[task]
        spec = self.tasks.get(task) or get_task(task)
        return _prompt_for(spec)

    def build(self, example: Example) -> tuple[str | None, list[Request]]:
        """(template id = PROMPT_VERSION, one LoglikelihoodRequest per candidate, in candidate order)."""
        prompt = self.prompt(example.task)
        triples = prompt.triples(example)
        if len(triples) != len(example.candidates):
            raise DataError(f"{example.example_id}: lm_eval.doc_to_choice gave {len(triples)} choices for "
                            f"{len(example.candidates)} candidates")
        requests: list[Request] = [
            LoglikelihoodRequest(example.example_id, i, context, prompt.target_delimiter + continuation, choice)
            for i, (context, continuation, choice) in enumerate(triples)
        ]
        return PROMPT_VERSION, requests

"""The work every model is measured on: a task's real inputs as token-id rows, not a dummy prompt.

An encoder gets one row per candidate statement (the verbalizer's templates, seeded draws); a causal LM gets one
row per lm-eval 0.4.13 log-likelihood request, the model input lm-eval feeds it: ``(context + continuation)[:-1]``
cut to the model's window. So both see the real number of rows per example (2 for XCOPA, 3 for XNLI).

Rows keep their token ids. A random-weight model whose own tokenizer is not on this machine (hub presets) is
measured on the ids of a *stand-in* tokenizer of the same kind (recorded as such), folded into its vocabulary:
row lengths are then approximate, the work per row is exact for that length.
"""

from __future__ import annotations

import hashlib
import json
import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.batching import Collator
from harness.core import Request, RequestKind
from harness.errors import UsageError


@dataclass
class Workload:
    """Rows of token ids (model inputs), the example each row belongs to, and where they came from."""

    request_kind: RequestKind
    tasks: tuple[str, ...]
    languages: dict[str, list[str]]
    rows: list[tuple[int, ...]]
    example_of_row: list[int]
    n_examples: int
    tokenizer: str  # "own" or "stand-in: <what>"
    truncated: int  # rows cut to the model's input limit
    data_sha256: dict[str, str | None] = field(default_factory=dict)
    limit: int | None = None

    @property
    def n_rows(self) -> int:
        return len(self.rows)

    @property
    def rows_per_example(self) -> float:
        return self.n_rows / self.n_examples if self.n_examples else 0.0

    @property
    def lengths(self) -> list[int]:
        return [len(r) for r in self.rows]

    @property
    def longest(self) -> tuple[int, ...]:
        return max(self.rows, key=len)

    def fingerprint(self) -> str:
        """sha256 of the rows' token ids: two models on the same tokenizer saw identical inputs."""
        h = hashlib.sha256()
        for row in self.rows:
            h.update(json.dumps(row).encode())
        return h.hexdigest()

    def summary(self) -> dict[str, Any]:
        lengths = sorted(self.lengths)
        return {
            "request_kind": self.request_kind, "tasks": list(self.tasks), "languages": self.languages,
            "limit": self.limit, "n_examples": self.n_examples, "n_rows": self.n_rows,
            "rows_per_example": round(self.rows_per_example, 4), "tokenizer": self.tokenizer,
            "tokens": {"total": sum(lengths), "mean": round(statistics.fmean(lengths), 2) if lengths else 0,
                       "p50": lengths[len(lengths) // 2] if lengths else 0, "max": lengths[-1] if lengths else 0},
            "truncated": self.truncated, "data_sha256": self.data_sha256, "rows_sha256": self.fingerprint(),
        }

    def batches(self, batch_size: int, seed: int = 0) -> list[list[int]]:
        """Row indices in batches as the backends form them (longest first, so each batch pads little),
        returned in a seeded random order so that any prefix of them is a fair sample of the whole task."""
        return Collator(self.lengths).batches(batch_size, shuffle=random.Random(f"batches/{seed}/{batch_size}"))


def _requests(tasks: Sequence[str], languages: Sequence[str] | None, limit: int | None, kind: RequestKind,
              seed: int, include_paths: Sequence[str] = (),
              ) -> tuple[list[list[Request]], dict[str, list[str]], dict[str, str | None]]:
    """Per example, its requests (one per candidate), from the same planner and builders as `bench run`."""
    from harness.runner import RunConfig, plan_run, request_builder

    plan = plan_run(RunConfig(tasks=tuple(tasks), languages=tuple(languages) if languages else None,
                              limit=limit, seed=seed, include_paths=tuple(include_paths)))
    builder = request_builder(plan, kind)
    per_example: list[list[Request]] = []
    langs: dict[str, list[str]] = {}
    sha: dict[str, str | None] = {}
    for es in plan.example_sets:
        langs.setdefault(es.task, []).append(es.language)
        sha[f"{es.task}/{es.language}/{es.split}"] = es.rowset.sha256
        for example in es.examples:
            per_example.append(builder.build(example)[1])
    if not per_example:
        raise UsageError(f"--tasks {','.join(tasks)}: no examples for the chosen languages")
    return per_example, langs, sha


def build_workload(tasks: Sequence[str], kind: RequestKind, tokenizer: Any, *, max_length: int,
                   languages: Sequence[str] | None = None, limit: int | None = None, seed: int = 0,
                   tokenizer_label: str = "own", vocab_size: int | None = None,
                   include_paths: Sequence[str] = ()) -> Workload:
    """Token-id rows for `kind` ("statement": encoder inputs; "loglikelihood": causal-LM inputs).

    `vocab_size` folds ids of a stand-in tokenizer into the measured model's vocabulary (id % vocab_size).
    """
    per_example, langs, sha = _requests(tasks, languages, limit, kind, seed, include_paths)
    flat = [r for reqs in per_example for r in reqs]
    owner = [i for i, reqs in enumerate(per_example) for _ in reqs]
    truncated = 0
    rows: list[tuple[int, ...]] = []
    if kind == "statement":
        texts = [getattr(r, "text", "") for r in flat]
        enc = tokenizer(texts, add_special_tokens=True, truncation=False, verbose=False)["input_ids"]
        for ids in enc:
            if len(ids) > max_length:
                truncated += 1
                ids = [*ids[:max_length - 1], ids[-1]]  # keep the closing special token, as truncation does
            rows.append(tuple(ids))
    else:
        from harness.prompts.causal_requests import CausalRequestEncoder

        encoder = CausalRequestEncoder(tokenizer, prompt="lm-eval", add_bos=None, chat_template=False,
                                       max_length=max_length, ref=tokenizer_label)
        for unit in encoder.units(flat):
            whole = unit.context + unit.continuation
            if len(whole) > max_length + 1:
                truncated += 1
                whole = whole[-(max_length + 1):]
            rows.append(tuple(whole[:-1]))
    if vocab_size:
        rows = [tuple(i % vocab_size for i in row) for row in rows]
    return Workload(request_kind=kind, tasks=tuple(tasks), languages=langs, rows=rows, example_of_row=owner,
                    n_examples=len(per_example), tokenizer=tokenizer_label, truncated=truncated,
                    data_sha256=sha, limit=limit)

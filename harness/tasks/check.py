"""`bench task check FILE`: validate a task file end to end and show what models will see."""

from __future__ import annotations

from pathlib import Path

from harness.errors import BenchError
from harness.tasks.examples import load_examples
from harness.tasks.registry import load_registry
from harness.tasks.taskfile import parse_task_file


def check_task_file(path: Path, *, language: str | None = None, split: str | None = None, seed: int = 0) -> str:
    """Parse the file, load every split x language (checksums, schema, labels), build the first example's
    statements (all templates) and lm-eval requests; returns the report text. Errors are raised as one line."""
    from harness.prompts.lm_eval_prompts import LMEvalRequestBuilder
    from harness.statement.templates import task_templates
    from harness.statement.verbalizer import fill

    spec = parse_task_file(Path(path))
    load_registry([path])  # a clash with a built-in task name is an error here too
    templates = task_templates(spec)
    lines = [f"{spec.path}: task {spec.name!r} ({spec.title}) is valid",
             f"  languages: {' '.join(spec.languages)}",
             f"  candidates: {spec.n_candidates or 'per row'}; chance "
             + (f"{spec.chance:.1f}%" if spec.chance is not None else "varies per example")]
    first = None
    for sname in spec.splits:
        counts = []
        for lang in spec.languages:
            es = load_examples(spec, lang, sname)
            counts.append(f"{lang}:{len(es.examples)}")
            if first is None and lang == (language or spec.languages[0]) and sname == (split or spec.default_split):
                first = es
        lines.append(f"  split {sname}: " + " ".join(counts))
    if first is None or not first.examples:
        raise BenchError(f"task file {spec.path}: no example to show for {language or spec.languages[0]}/"
                         f"{split or spec.default_split}")
    ex = first.examples[0]
    lines.append(f"first example {ex.example_id} (gold {ex.gold}: {ex.candidates[ex.gold]!r})")
    lines.append(f"  statements ({len(templates.templates)} template(s), {templates.path}):")
    group = ex.fields.get(templates.group_field) if templates.group_field else None
    for t in templates.eligible(group):
        for i, text in enumerate(fill(t, ex, templates.candidate_slot)):
            lines.append(f"    [{t.id}] {i}: {text}")
    if spec.lm_eval is not None and spec.lm_eval.declared:
        _, requests = LMEvalRequestBuilder({spec.name: spec}).build(ex)
        lines.append("  causal-LM requests (lm-eval 0.4.13 log-likelihood: context | continuation):")
        for r in requests:
            lines.append(f"    {r.candidate}: {getattr(r, 'context', '')!r} | {getattr(r, 'continuation', '')!r}")
    else:
        lines.append("  causal-LM requests: none (the task file has no `lm_eval:` prompt)")
    return "\n".join(lines)

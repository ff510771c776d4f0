"""Template sensitivity (``bench run --templates all``): accuracy per statement template, its mean and spread.

Input: the all-templates samples of one task (``template_id == "all"``, the per-template predictions in
``extra["templates"][template_id]["prediction"]``; see ``harness.statement.verbalizer.AllTemplatesRequestBuilder``).
A template counts only on the examples it was scored on: with a grouped template set (XCOPA: ``group_field:
question``, cause/effect templates), a template's accuracy is over the examples of its group only.

Output (``TaskResult.template_sensitivity``, a plain JSON-able dict; accuracies are fractions)::

    {"ensemble_rule": str, "std": "population (ddof=0) over templates", "group_field": str | None,
     "groups": {template_id: group} (grouped sets only), "note": str (grouped sets only),
     "languages": {lang: {"templates": {template_id: {"accuracy": float | None, "n": int}},
                          "n_templates": int, "mean": float, "min": float, "max": float, "spread": float,
                          "std": float, "ensemble_accuracy": float, "n": int}},
     "summary": {"templates": {template_id: mean accuracy over the languages that scored it},
                 "n_languages": int, "mean": ..., "min": ..., "max": ..., "spread": ..., "std": ...,
                 "language_mean": {"mean": ..., "min": ..., "max": ..., "spread": ..., "std": ...}}}

Per language, mean / min / max / spread (max - min) / std are over the templates scored on at least one example
(a template with n = 0 has accuracy None and is left out). ``summary`` gives the same statistics over the
per-template means across languages, and ``language_mean`` the per-language statistics averaged over languages
(the spread within a language is usually larger than the spread of the cross-language means).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from harness.core import Sample
from harness.errors import DataError

STD_RULE = "population (ddof=0) over templates"
STATS = ("mean", "min", "max", "spread", "std")


def spread_stats(values: Sequence[float]) -> dict[str, float]:
    """mean, min, max, spread (max - min) and population std (ddof=0) of ``values``; NaN for every one when empty."""
    vals = [float(v) for v in values]
    if not vals:
        return {k: math.nan for k in STATS}
    mean = sum(vals) / len(vals)
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / len(vals))
    return {"mean": mean, "min": min(vals), "max": max(vals), "spread": max(vals) - min(vals), "std": std}


def per_template_correct(samples: Iterable[Sample]) -> dict[str, list[bool]]:
    """Template id -> whether its prediction was right, one flag per sample that scored it (first-seen order)."""
    out: dict[str, list[bool]] = {}
    for s in samples:
        templates = s.extra.get("templates") if isinstance(s.extra, Mapping) else None
        if not isinstance(templates, Mapping):
            raise DataError(f"{s.example_id}: not an all-templates sample (no extra.templates); "
                            "was it scored with --templates all?")
        for tid, record in templates.items():
            try:
                prediction = int(record["prediction"])
            except (KeyError, TypeError, ValueError) as err:
                raise DataError(f"{s.example_id}: template {tid!r} has no prediction") from err
            out.setdefault(str(tid), []).append(prediction == s.gold)
    return out


def language_sensitivity(samples: Sequence[Sample], template_ids: Sequence[str] = ()) -> dict[str, Any]:
    """One language's block: accuracy and n per template (``template_ids`` first, in that order, then any other
    id the samples hold), the statistics over templates, and the ensemble (the samples' own) accuracy."""
    flags = per_template_correct(samples)
    order = list(dict.fromkeys([*template_ids, *flags]))
    table: dict[str, dict[str, Any]] = {}
    for tid in order:
        f = flags.get(tid, [])
        table[tid] = {"accuracy": sum(f) / len(f) if f else None, "n": len(f)}
    scored = [v["accuracy"] for v in table.values() if v["accuracy"] is not None]
    n = len(samples)
    return {"templates": table, "n_templates": len(scored), **spread_stats(scored),
            "ensemble_accuracy": sum(1 for s in samples if s.correct) / n if n else math.nan, "n": n}


def task_summary(languages: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Per task: each template's mean accuracy over the languages that scored it, the statistics over those
    means, and (``language_mean``) each per-language statistic averaged over the languages."""
    per_template: dict[str, list[float]] = {}
    for block in languages.values():
        for tid, cell in block["templates"].items():
            per_template.setdefault(tid, [])
            if cell["accuracy"] is not None:
                per_template[tid].append(float(cell["accuracy"]))
    means = {tid: (sum(v) / len(v) if v else None) for tid, v in per_template.items()}
    finite = [m for m in means.values() if m is not None]
    blocks = [b for b in languages.values() if b["n_templates"] > 0]
    language_mean = {k: (sum(float(b[k]) for b in blocks) / len(blocks) if blocks else math.nan) for k in STATS}
    return {"templates": means, "n_languages": len(blocks), **spread_stats(finite), "language_mean": language_mean}


def template_sensitivity(samples_by_language: Mapping[str, Sequence[Sample]], template_ids: Sequence[str] = (),
                         groups: Mapping[str, str | None] | None = None, group_field: str | None = None,
                         ensemble_rule: str = "") -> dict[str, Any]:
    """The task's ``template_sensitivity`` block (see the module docstring) from its all-templates samples."""
    languages = {lang: language_sensitivity(samples, template_ids)
                 for lang, samples in samples_by_language.items()}
    out: dict[str, Any] = {"ensemble_rule": ensemble_rule, "std": STD_RULE, "group_field": group_field}
    if group_field is not None:
        out["groups"] = dict(groups or {})
        out["note"] = (f"grouped templates: each is scored only on examples whose {group_field!r} is its group, "
                       "so its accuracy and n are over that group's examples")
    out["languages"] = languages
    out["summary"] = task_summary(languages)
    return out

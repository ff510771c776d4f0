#!/usr/bin/env python
"""Parity proof: our causal-LM stack reproduces lm-evaluation-harness 0.4.13 sample by sample.

For the first N examples of every language of the chosen tasks, on the same model (fp32):

- lm-eval itself: ``simple_evaluate`` (HFLM, ``model="hf"``) on task YAMLs generated from lm-eval's own configs
  with our packaged rows as local data (`harness.lmeval`), ``log_samples=True``;
- our stack: `LMEvalRequestBuilder` requests scored by `HFCausalBackend`.

Per sample it checks: identical request strings (context, continuation), identical token ids (our
``encode_pair`` vs the split HFLM scores: ``_encode_pair``, or the prefix token for an empty context), summed
log-likelihoods within ``--tol`` (1e-3), and identical predictions (acc: argmax loglik; acc_norm: argmax
loglik / len(choice)). is_greedy agreement is reported, not required.

Prints a per task/language table and the overall figures; exits 1 on any mismatch. ``--out`` writes everything
(summary, per-language rows, every mismatch) as JSON.

``--pick shortest --pool 20`` takes, per language, the N examples with the shortest requests among the first 20
(the CI test does this: Burmese/Telugu stories are 1-2k SmolLM2 tokens). ``--lmeval-cache FILE`` stores lm-eval's
side (strings, log-likelihoods, is_greedy, acc_norm choices, gold, acc flags, HFLM token ids) and reuses it
when it is for the same model fingerprint and covers the examples: lm-eval on CPU is the slow half, and a
change on our side then needs only our side re-run.

    python benchmarks/parity_lmeval.py --model smollm2-135m --limit 20
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.core import argmax

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ALL_TASKS = ("xcopa", "xnli", "xstorycloze", "xwinograd")
TOL = 1e-3


@dataclass
class LangRow:
    task: str
    language: str
    n: int = 0
    requests: int = 0
    max_abs_delta: float = 0.0
    acc_agree: int = 0
    acc_norm_agree: int = 0
    tokens_agree: int = 0  # requests with identical (context, continuation) token ids
    strings_agree: int = 0  # requests with identical (context, continuation) strings
    greedy_agree: int = 0
    lmeval_acc: int = 0  # lm-eval's correct count (for orientation)
    ours_acc: int = 0
    tol: float = TOL

    @property
    def ok(self) -> bool:
        return (self.max_abs_delta <= self.tol and self.acc_agree == self.n and self.acc_norm_agree == self.n
                and self.tokens_agree == self.requests and self.strings_agree == self.requests)


@dataclass
class ParityReport:
    model: str
    model_path: str
    limit: int
    tol: float
    selection: str = "first"
    lmeval_cached: str | None = None  # the lm-eval cache file the lm-eval side was read from, if any
    rows: list[LangRow] = field(default_factory=list)
    mismatches: list[dict[str, Any]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return sum(r.n for r in self.rows)

    @property
    def n_requests(self) -> int:
        return sum(r.requests for r in self.rows)

    @property
    def max_abs_delta(self) -> float:
        return max((r.max_abs_delta for r in self.rows), default=0.0)

    @property
    def ok(self) -> bool:
        return bool(self.rows) and all(r.ok for r in self.rows) and not self.mismatches

    def agreement(self, attr: str, per: str = "n") -> float:
        total = sum(getattr(r, per) for r in self.rows)
        return sum(getattr(r, attr) for r in self.rows) / total if total else 1.0

    def summary(self) -> dict[str, Any]:
        return {"model": self.model, "model_path": self.model_path, "limit": self.limit,
                "selection": self.selection, "tol": self.tol,
                "samples": self.n, "requests": self.n_requests, "max_abs_delta_loglik": self.max_abs_delta,
                "acc_prediction_agreement": self.agreement("acc_agree"),
                "acc_norm_prediction_agreement": self.agreement("acc_norm_agree"),
                "token_id_agreement": self.agreement("tokens_agree", "requests"),
                "string_agreement": self.agreement("strings_agree", "requests"),
                "greedy_agreement": self.agreement("greedy_agree", "requests"),
                "mismatches": len(self.mismatches), "ok": self.ok, "seconds": self.seconds,
                "lmeval_cached": self.lmeval_cached}


def _loglik_requests(builder: Any, example: Any) -> list[Any]:
    from harness.core import LoglikelihoodRequest

    _, reqs = builder.build(example)
    out = [r for r in reqs if isinstance(r, LoglikelihoodRequest)]
    if len(out) != len(reqs):
        raise SystemExit(f"{example.example_id}: LMEvalRequestBuilder built non-loglikelihood requests")
    return out



def select_examples(tasks: Sequence[str], languages: Sequence[str] | None, limit: int, pick: str = "first",
                    pool: int = 20) -> list[Any]:
    """Example sets per task/language: the first ``limit`` examples, or (``pick="shortest"``) the ``limit``
    examples with the shortest lm-eval requests among the first ``pool`` (kept in row order)."""
    from dataclasses import replace

    from harness.prompts.lm_eval_prompts import LMEvalRequestBuilder
    from harness.tasks.examples import load_examples
    from harness.tasks.registry import load_registry

    TASKS = load_registry().tasks

    builder = LMEvalRequestBuilder()

    def size(ex: Any) -> int:
        return sum(len(r.context) + len(r.continuation) for r in _loglik_requests(builder, ex))

    sets = []
    for task in tasks:
        for lang in TASKS[task].languages:
            if languages is not None and lang not in languages:
                continue
            if pick == "first":
                sets.append(load_examples(task, lang, limit=limit))
                continue
            es = load_examples(task, lang, limit=max(pool, limit))
            chosen = sorted(sorted(es.examples, key=lambda ex: (size(ex), ex.index))[:limit], key=lambda ex: ex.index)
            sets.append(replace(es, examples=chosen))
    return sets


def lmeval_side(model_path: str, revision: str | None, example_sets: list[Any], batch_size: int, device: str,
                threads: int | None) -> dict[str, Any]:
    """Run lm-eval itself; plain data per example id (request strings, log-likelihoods, is_greedy, acc_norm
    choices, lm-eval's gold and acc/acc_norm flags, and the token ids HFLM scored), JSON-serialisable."""
    from harness.backends.base import BackendConfig
    from harness.lmeval import lm_eval_version
    from harness.lmeval.bridge import LMEvalBackend, lmeval_gold, lmeval_token_split

    t0 = time.perf_counter()
    backend = LMEvalBackend(BackendConfig(model=model_path, dtype="fp32", device=device, batch_size=batch_size,
                                          threads=threads))
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    written = backend.write_tasks(example_sets)
    raw = backend.run_lm_eval(list(written))
    eval_s = time.perf_counter() - t0
    samples: dict[str, Any] = {}
    for name, (_es, examples) in written.items():
        logged = sorted(raw["samples"].get(name, []), key=lambda e: int(e["doc_id"]))
        task_obj = raw["task_objects"][name]
        for ex, entry in zip(examples, logged, strict=False):
            pairs = [(str(a[0]), str(a[1])) for a in entry["arguments"]]
            samples[ex.example_id] = {
                "task_name": name,
                "pairs": pairs,
                "lls": [float(r[0]) for r in entry["filtered_resps"]],
                "greedy": [bool(r[1]) for r in entry["filtered_resps"]],
                "choices": list(task_obj.doc_to_choice(entry["doc"])),
                "gold": lmeval_gold(task_obj, entry["doc"]),
                "acc": entry.get("acc"),
                "acc_norm": entry.get("acc_norm"),
                "tokens": [list(map(list, lmeval_token_split(backend.lm, *p))) for p in pairs],
            }
    info = backend.info()
    backend.close()
    return {"model_path": model_path, "revision": revision, "lm_eval": lm_eval_version(),
            "device": info.device, "dtype": info.dtype, "batch_size": batch_size,
            "seconds": {"lmeval_load": round(load_s, 2), "lmeval_eval": round(eval_s, 2)}, "samples": samples}


def _cached_lmeval(path: Path | None, revision: str | None, wanted: list[str]) -> dict[str, Any] | None:
    if path is None or not path.is_file():
        return None
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    if data.get("revision") != revision or not set(wanted) <= set(data.get("samples", {})):
        print(f"  {path}: lm-eval cache is for another model or other examples; running lm-eval", file=sys.stderr)
        return None
    return data


def run_parity(model: str, tasks: Sequence[str] = ALL_TASKS, languages: Sequence[str] | None = None,
               limit: int = 20, batch_size: int = 16, device: str = "cpu", tol: float = TOL,
               threads: int | None = None, progress: bool = True, pick: str = "first",
               pool: int = 20, lmeval_cache: Path | None = None) -> ParityReport:
    """Run both stacks and compare them (see the module doc).

    ``lmeval_cache``: a JSON file with lm-eval's side (`lmeval_side`); reused when it is for the same model
    (content fingerprint) and covers the examples, else lm-eval runs and the file is (re)written.
    """
    import torch

    from harness.backends.base import BackendConfig
    from harness.backends.hf_causal import HFCausalBackend
    from harness.device import environment
    from harness.models.materialise import resolve_model
    from harness.prompts.lm_eval_prompts import LMEvalRequestBuilder

    if threads:
        torch.set_num_threads(threads)
    resolved = resolve_model(model)
    report = ParityReport(model=model, model_path=resolved.path, limit=limit, tol=tol,
                          selection="first" if pick == "first" else f"shortest of the first {pool}")
    example_sets = select_examples(tasks, languages, limit, pick, pool)
    if not example_sets:
        raise SystemExit("no task/language selected")
    wanted = [ex.example_id for es in example_sets for ex in es.examples]

    # ---- lm-eval itself (or its cached output for this model and these examples)
    lm_side = _cached_lmeval(lmeval_cache, resolved.revision, wanted)
    if lm_side is None:
        lm_side = lmeval_side(resolved.path, resolved.revision, example_sets, batch_size, device, threads)
        if lmeval_cache is not None:
            lmeval_cache.parent.mkdir(parents=True, exist_ok=True)
            lmeval_cache.write_text(json.dumps(lm_side, ensure_ascii=False) + "\n", encoding="utf-8")
    else:
        report.lmeval_cached = str(lmeval_cache)
    report.seconds.update(lm_side["seconds"])

    # ---- our stack
    t0 = time.perf_counter()
    ours = HFCausalBackend(BackendConfig(model=resolved.path, dtype="fp32", device=device, batch_size=batch_size,
                                         threads=threads))
    report.seconds["ours_load"] = round(time.perf_counter() - t0, 2)
    builder = LMEvalRequestBuilder()
    built = [(ex, _loglik_requests(builder, ex)) for es in example_sets for ex in es.examples]
    flat = [r for _, reqs in built for r in reqs]
    t0 = time.perf_counter()
    scores = ours.score(flat)
    report.seconds["ours_score"] = round(time.perf_counter() - t0, 2)
    ours_by_id: dict[str, tuple[list[Any], list[Any]]] = {}
    pos = 0
    for ex, reqs in built:
        ours_by_id[ex.example_id] = (reqs, list(scores[pos:pos + len(reqs)]))
        pos += len(reqs)

    # ---- compare
    for es in example_sets:
        row = LangRow(es.task, es.language, tol=tol)
        for ex in es.examples:
            lm_s = lm_side["samples"].get(ex.example_id)
            if lm_s is None:
                report.mismatches.append({"example_id": ex.example_id, "what": "lm-eval logged no sample"})
                continue
            row.n += 1
            lm_pairs = [tuple(p) for p in lm_s["pairs"]]
            lm_lls, lm_greedy, choices = lm_s["lls"], lm_s["greedy"], lm_s["choices"]
            lm_pred = argmax(lm_lls)
            lm_pred_norm = argmax([ll / len(c) for ll, c in zip(lm_lls, choices, strict=True)])
            mism: dict[str, Any] = {}
            if lm_s["gold"] != ex.gold:
                mism["gold"] = [lm_s["gold"], ex.gold]
            for metric, p in (("acc", lm_pred), ("acc_norm", lm_pred_norm)):  # our reading of lm-eval's samples
                flag = lm_s.get(metric)
                if flag is not None and bool(float(flag)) != (p == lm_s["gold"]):
                    mism[f"lmeval_{metric}_flag"] = {"flag": flag, "prediction": p, "gold": lm_s["gold"]}
            reqs, our_scores = ours_by_id[ex.example_id]
            our_pairs = [(r.context, r.continuation) for r in reqs]
            our_lls = [s.value for s in our_scores]
            row.requests += len(lm_pairs)
            if len(our_pairs) != len(lm_pairs):
                mism["n_requests"] = [len(lm_pairs), len(our_pairs)]
            for i, (lp, op) in enumerate(zip(lm_pairs, our_pairs, strict=False)):
                if lp == op:
                    row.strings_agree += 1
                else:
                    mism.setdefault("strings", []).append({"i": i, "lmeval": lp, "ours": op})
                lm_tok = [list(t) for t in lm_s["tokens"][i]]
                our_tok = [list(t) for t in ours.encode_pair(*op)]
                if lm_tok == our_tok:
                    row.tokens_agree += 1
                else:
                    mism.setdefault("tokens", []).append({"i": i, "lmeval": lm_tok, "ours": our_tok})
            for i, (g, s) in enumerate(zip(lm_greedy, our_scores, strict=False)):
                if s.greedy is None or bool(s.greedy) == g:
                    row.greedy_agree += 1
                else:
                    mism.setdefault("greedy_info", []).append({"i": i, "lmeval": g, "ours": s.greedy})
            deltas = [abs(a - b) for a, b in zip(lm_lls, our_lls, strict=False)]
            delta = max(deltas, default=0.0)
            row.max_abs_delta = max(row.max_abs_delta, delta)
            if delta > tol:
                mism["loglik"] = {"lmeval": lm_lls, "ours": our_lls, "max_abs_delta": delta}
            our_choices = [r.choice for r in reqs]
            our_pred = argmax(our_lls)
            our_pred_norm = argmax([ll / len(c) for ll, c in zip(our_lls, our_choices, strict=True)])
            if our_choices != list(choices):
                mism["acc_norm_choices"] = {"lmeval": list(choices), "ours": our_choices}
            if our_pred == lm_pred:
                row.acc_agree += 1
            else:
                mism["acc_prediction"] = [lm_pred, our_pred]
            if our_pred_norm == lm_pred_norm:
                row.acc_norm_agree += 1
            else:
                mism["acc_norm_prediction"] = [lm_pred_norm, our_pred_norm]
            row.lmeval_acc += int(lm_pred == ex.gold)
            row.ours_acc += int(our_pred == ex.gold)
            if set(mism) - {"greedy_info"}:
                report.mismatches.append({"example_id": ex.example_id, **mism})
        report.rows.append(row)
        if progress:
            print(f"  compared {es.task}/{es.language}: n={row.n} max|Δ|={row.max_abs_delta:.2e}", file=sys.stderr)
    info = ours.info()
    ours.close()
    env = environment()
    report.environment = {k: env.get(k) for k in ("python", "platform", "cpu", "cpu_count", "packages")}
    report.environment["torch_threads"] = torch.get_num_threads()
    report.environment["device"] = info.device
    report.environment["lm_eval_side"] = {k: lm_side[k] for k in ("lm_eval", "device", "dtype", "batch_size")}
    return report


def format_report(report: ParityReport) -> str:
    which = (f"first {report.limit} examples per language" if report.selection == "first"
             else f"{report.limit} examples per language ({report.selection}, shortest requests)")
    lines = [f"lm-eval parity: model {report.model} ({report.model_path}), fp32, {which}, tol {report.tol:g}",
             f"{'task':<12} {'lang':<4} {'n':>4} {'reqs':>5} {'max|Δloglik|':>13} {'acc agree':>10} "
             f"{'norm agree':>10} {'tokens':>9} {'strings':>9} {'acc lm/ours':>11}  ok"]
    for r in report.rows:
        lines.append(f"{r.task:<12} {r.language:<4} {r.n:>4} {r.requests:>5} {r.max_abs_delta:>13.2e} "
                     f"{100 * r.acc_agree / max(r.n, 1):>9.1f}% {100 * r.acc_norm_agree / max(r.n, 1):>9.1f}% "
                     f"{r.tokens_agree:>4}/{r.requests:<4} {r.strings_agree:>4}/{r.requests:<4} "
                     f"{r.lmeval_acc:>5}/{r.ours_acc:<5}  {'yes' if r.ok else 'NO'}")
    s = report.summary()
    lines.append(
        f"overall: {s['samples']} samples, {s['requests']} requests, {len(report.rows)} task/languages; "
        f"max |Δloglik| {s['max_abs_delta_loglik']:.3e}; acc agreement {100 * s['acc_prediction_agreement']:.2f}%; "
        f"acc_norm agreement {100 * s['acc_norm_prediction_agreement']:.2f}%; token ids "
        f"{100 * s['token_id_agreement']:.2f}%; strings {100 * s['string_agreement']:.2f}%; "
        f"is_greedy {100 * s['greedy_agreement']:.2f}%; mismatching samples {s['mismatches']}")
    lines.append(f"timing (s): {json.dumps(report.seconds)}"
                 + (f" (lm-eval side read from {report.lmeval_cached})" if report.lmeval_cached else ""))
    lines.append("PARITY OK" if report.ok else "PARITY FAILED")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m", help="preset (gemma3-270m, smollm2-135m) or a model dir")
    ap.add_argument("--limit", type=int, default=20, help="first N examples per language (default 20)")
    ap.add_argument("--tasks", nargs="+", default=list(ALL_TASKS), choices=ALL_TASKS)
    ap.add_argument("--langs", nargs="+", default=None, help="languages (default: every language of each task)")
    ap.add_argument("--pick", choices=("first", "shortest"), default="first",
                    help="first N examples (default), or the N with the shortest requests among the first --pool")
    ap.add_argument("--pool", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--tol", type=float, default=TOL, help="max |Δ loglik| allowed (default 1e-3)")
    ap.add_argument("--out", type=Path, default=None, help="write the full report as JSON")
    ap.add_argument("--lmeval-cache", type=Path, default=None,
                    help="JSON file for lm-eval's side: reused when it matches the model and examples, else written")
    args = ap.parse_args(argv)
    report = run_parity(args.model, args.tasks, args.langs, args.limit, args.batch_size, args.device, args.tol,
                        args.threads, pick=args.pick, pool=args.pool, lmeval_cache=args.lmeval_cache)
    print(format_report(report))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"summary": report.summary(), "environment": report.environment,
                                        "rows": [asdict(r) | {"ok": r.ok} for r in report.rows],
                                        "mismatches": report.mismatches}, indent=1, ensure_ascii=False,
                                       default=str) + "\n", encoding="utf-8")
    for m in report.mismatches[:10]:
        print("mismatch:", json.dumps(m, ensure_ascii=False, default=str)[:600], file=sys.stderr)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main())

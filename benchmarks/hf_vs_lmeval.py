#!/usr/bin/env python
"""Speed of our ``hf`` backend vs lm-evaluation-harness's HF backend (HFLM) on the same model, tasks and examples.

Fairness: each side runs in its own fresh subprocess (same interpreter, same environment, same torch thread
count, one after the other, never concurrently), so neither inherits the other's caches, allocator state or
memory peak. The model preset is materialised (GGUF dequantised) in the parent first, so conversion time is in
neither side. Each worker:

1. loads the model (timed: ``load_s``);
2. warms up on the first ``--warmup`` examples of the first task/language (not timed);
3. evaluates every selected example once, timed (``eval_s``):

   - ours: `LMEvalRequestBuilder` builds the requests, `HFCausalBackend.score` scores them (what
     ``bench run --backend hf`` does per chunk, without the result files);
   - lm-eval: ``TaskManager(include_path=...)`` + ``simple_evaluate(model=<HFLM>, tasks=[names])`` on task
     YAMLs generated from lm-eval's own configs (`harness.lmeval.task_yaml`, written before the clock starts),
     ``log_samples=True``, ``bootstrap_iters=0`` (no bootstrap stderr: it is not model work).

   ``score_s`` is the model part alone: our ``score`` call vs the time lm-eval spends inside
   ``HFLM.loglikelihood`` (tokenisation + forward passes), measured by wrapping that method.

4. reports peak RSS (``ru_maxrss`` of the worker, i.e. including model load) and, on CUDA, peak allocated memory.

The parent compares the per-request log-likelihoods (max |Δ|, prediction agreement) and prints the ratio
``lm-eval eval_s / ours eval_s`` (goal: >= 1.5 with identical scores).

    python benchmarks/hf_vs_lmeval.py --model smollm2-135m --limit 5
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.core import argmax

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
ALL_TASKS = ("xcopa", "xnli", "xstorycloze", "xwinograd")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _proc_status(key: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def _example_sets(tasks: Sequence[str], langs: Sequence[str] | None, limit: int) -> list[Any]:
    from harness.tasks.examples import load_examples
    from harness.tasks.registry import load_registry

    TASKS = load_registry().tasks

    return [load_examples(t, lang, limit=limit) for t in tasks for lang in TASKS[t].languages
            if langs is None or lang in langs]


def _warmup_sets(sets: list[Any], n: int) -> list[Any]:
    from dataclasses import replace

    return [replace(sets[0], examples=sets[0].examples[:n])]


# -------------------------------------------------------------------------------------------------- workers

def worker_ours(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from harness.backends.base import BackendConfig
    from harness.backends.hf_causal import HFCausalBackend
    from harness.prompts.lm_eval_prompts import LMEvalRequestBuilder

    t0 = time.perf_counter()
    backend = HFCausalBackend(BackendConfig(model=args.model_path, dtype=args.dtype, device=args.device,
                                            batch_size=args.hf_batch_size, threads=args.threads))
    load_s = time.perf_counter() - t0
    sets = _example_sets(args.tasks, args.langs, args.limit)
    builder = LMEvalRequestBuilder()

    def run(example_sets: list[Any]) -> tuple[dict[str, list[float]], float, int]:
        flat, owners = [], []
        for es in example_sets:
            for ex in es.examples:
                _, reqs = builder.build(ex)
                flat.extend(reqs)
                owners.extend([ex.example_id] * len(reqs))
        t = time.perf_counter()
        scores = backend.score(flat)
        _sync(torch, args.device)
        score_s = time.perf_counter() - t
        out: dict[str, list[float]] = {}
        for owner, s in zip(owners, scores, strict=True):
            out.setdefault(owner, []).append(s.value)
        return out, score_s, len(flat)

    run(_warmup_sets(sets, args.warmup))
    _reset_cuda_peak(torch, args.device)
    t0 = time.perf_counter()
    scores, score_s, n_requests = run(sets)
    eval_s = time.perf_counter() - t0
    info = backend.info()
    backend.close()
    return {"side": "ours (hf backend)", "load_s": load_s, "eval_s": eval_s, "score_s": score_s,
            "requests": n_requests, "examples": len(scores), "batch_size": args.hf_batch_size,
            "dtype": info.dtype, "device": info.device, "scores": scores, **_memory(torch, args.device)}


def worker_lmeval(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from harness.backends.base import BackendConfig
    from harness.lmeval.bridge import LMEvalBackend

    tmp_dir = tempfile.TemporaryDirectory(prefix="sb-bench-lmeval-")
    tmp = Path(tmp_dir.name)
    t0 = time.perf_counter()
    backend = LMEvalBackend(BackendConfig(model=args.model_path, dtype=args.dtype, device=args.device,
                                          batch_size=args.lmeval_batch_size, threads=args.threads,
                                          options={"work_dir": str(tmp)}))
    load_s = time.perf_counter() - t0
    sets = _example_sets(args.tasks, args.langs, args.limit)
    lm = backend.lm
    inner = {"s": 0.0}
    original = lm.loglikelihood

    def timed_loglikelihood(requests: Any, *a: Any, **kw: Any) -> Any:
        t = time.perf_counter()
        try:
            return original(requests, *a, **kw)
        finally:
            _sync(torch, args.device)
            inner["s"] += time.perf_counter() - t

    lm.loglikelihood = timed_loglikelihood

    def run(example_sets: list[Any], work: Path) -> tuple[dict[str, list[float]], float, int]:
        from lm_eval import simple_evaluate
        from lm_eval.tasks import TaskManager

        backend.work_dir = work
        written = backend.write_tasks(example_sets)  # YAML + jsonl: before the clock
        inner["s"] = 0.0
        t = time.perf_counter()
        tm = TaskManager(include_path=str(work), include_defaults=False)
        res = simple_evaluate(model=lm, tasks=list(written), task_manager=tm, batch_size=args.lmeval_batch_size,
                              device=backend.device_arg, log_samples=True, bootstrap_iters=0)
        _sync(torch, args.device)
        elapsed = time.perf_counter() - t
        out: dict[str, list[float]] = {}
        n = 0
        for name, (_es, examples) in written.items():
            logged = sorted(res["samples"][name], key=lambda s: int(s["doc_id"]))
            for ex, entry in zip(examples, logged, strict=True):
                out[ex.example_id] = [float(r[0]) for r in entry["filtered_resps"]]
                n += len(entry["filtered_resps"])
        return out, elapsed, n

    run(_warmup_sets(sets, args.warmup), tmp / "warmup")
    _reset_cuda_peak(torch, args.device)
    scores, eval_s, n_requests = run(sets, tmp / "run")
    info = backend.info()
    tmp_dir.cleanup()
    return {"side": "lm-eval 0.4.13 HFLM", "load_s": load_s, "eval_s": eval_s, "score_s": inner["s"],
            "requests": n_requests, "examples": len(scores), "batch_size": args.lmeval_batch_size,
            "dtype": info.dtype, "device": info.device, "scores": scores, **_memory(torch, args.device)}


def _sync(torch: Any, device: str) -> None:
    if device.startswith("cuda") or (device == "auto" and torch.cuda.is_available()):
        torch.cuda.synchronize()


def _reset_cuda_peak(torch: Any, device: str) -> None:
    if torch.cuda.is_available() and device != "cpu":
        torch.cuda.reset_peak_memory_stats()


def _memory(torch: Any, device: str) -> dict[str, Any]:
    mem: dict[str, Any] = {"peak_rss_mb": round(_peak_rss_mb(), 1), "vm_hwm_mb": _proc_status("VmHWM")}
    if torch.cuda.is_available() and device != "cpu":
        mem["cuda_peak_allocated_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    mem["torch_threads"] = torch.get_num_threads()
    return mem


# --------------------------------------------------------------------------------------------------- parent

def _spawn(side: str, args: argparse.Namespace, model_path: str) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as fh:
        result_path = Path(fh.name)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", side, "--result", str(result_path),
           "--model", model_path, "--limit", str(args.limit), "--tasks", *args.tasks,
           "--hf-batch-size", str(args.hf_batch_size), "--lmeval-batch-size", str(args.lmeval_batch_size),
           "--device", args.device, "--dtype", args.dtype, "--warmup", str(args.warmup)]
    if args.langs:
        cmd += ["--langs", *args.langs]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    env = {**os.environ, "TQDM_DISABLE": "1", "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"{side} worker failed with exit code {proc.returncode}")
    data = json.loads(result_path.read_text())
    result_path.unlink()
    data["process_s"] = time.perf_counter() - t0
    return data


def compare(ours: dict[str, Any], theirs: dict[str, Any]) -> dict[str, Any]:
    a, b = ours["scores"], theirs["scores"]
    common = sorted(set(a) & set(b))
    deltas = [abs(x - y) for k in common for x, y in zip(a[k], b[k], strict=True)]
    agree = sum(argmax(a[k]) == argmax(b[k]) for k in common)
    return {"examples_compared": len(common), "missing": len(set(a) ^ set(b)),
            "max_abs_delta_loglik": max(deltas, default=0.0),
            "prediction_agreement": agree / len(common) if common else 1.0}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m", help="preset (smollm2-135m, gemma3-270m) or a model dir")
    ap.add_argument("--limit", type=int, default=5, help="first N examples per language (default 5)")
    ap.add_argument("--tasks", nargs="+", default=list(ALL_TASKS), choices=ALL_TASKS)
    ap.add_argument("--langs", nargs="+", default=None)
    ap.add_argument("--batch-size", type=int, default=None, help="both sides (default: hf 32, lm-eval 32)")
    ap.add_argument("--hf-batch-size", type=int, default=32)
    ap.add_argument("--lmeval-batch-size", type=int, default=32)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="fp32")
    ap.add_argument("--threads", type=int, default=None, help="torch threads for both (default: torch's)")
    ap.add_argument("--warmup", type=int, default=4, help="warm-up examples (not timed)")
    ap.add_argument("--out", type=Path, default=None, help="write the report as JSON")
    ap.add_argument("--worker", choices=("ours", "lmeval"), help=argparse.SUPPRESS)
    ap.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.batch_size:
        args.hf_batch_size = args.lmeval_batch_size = args.batch_size

    if args.worker:
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        args.model_path = args.model
        result = worker_ours(args) if args.worker == "ours" else worker_lmeval(args)
        args.result.write_text(json.dumps(result))
        return 0

    import importlib.metadata

    import torch
    import transformers

    from harness.models.materialise import resolve_model

    model_path = resolve_model(args.model).path  # materialise once, outside both timings
    theirs = _spawn("lmeval", args, model_path)
    ours = _spawn("ours", args, model_path)
    cmp = compare(ours, theirs)
    ratio = theirs["eval_s"] / ours["eval_s"] if ours["eval_s"] else float("inf")
    score_ratio = theirs["score_s"] / ours["score_s"] if ours["score_s"] else float("inf")
    report = {
        "model": args.model, "model_path": model_path, "tasks": args.tasks, "langs": args.langs or "all",
        "limit": args.limit, "examples": ours["examples"], "requests": ours["requests"],
        "device": ours["device"], "dtype": ours["dtype"], "torch": torch.__version__,
        "transformers": transformers.__version__, "lm_eval": importlib.metadata.version("lm_eval"),
        "threads": {"ours": ours["torch_threads"], "lm-eval": theirs["torch_threads"]},
        "batch_size": {"ours": ours["batch_size"], "lm-eval": theirs["batch_size"]},
        "sides": {k: {f: v for f, v in d.items() if f != "scores"} for k, d in (("ours", ours), ("lm-eval", theirs))},
        "speedup_eval": ratio, "speedup_score": score_ratio, **cmp,
    }
    w = 12
    print(f"hf backend vs lm-eval HFLM: model {args.model}, {report['examples']} examples, {report['requests']} "
          f"requests ({', '.join(args.tasks)}; {report['langs'] if args.langs else 'all languages'}; first "
          f"{args.limit} per language)")
    print(f"device {report['device']}, dtype {report['dtype']}, torch {report['torch']}, transformers "
          f"{report['transformers']}, lm-eval {report['lm_eval']}, torch threads {report['threads']}, "
          f"batch sizes {report['batch_size']}; fresh subprocess per side, warm-up {args.warmup} examples excluded")
    print(f"{'':<22}{'load s':>{w}}{'eval s':>{w}}{'req/s':>{w}}{'score s':>{w}}{'peak RSS MB':>{w}}")
    for name, d in (("lm-eval (HFLM)", theirs), ("ours (hf backend)", ours)):
        print(f"{name:<22}{d['load_s']:>{w}.2f}{d['eval_s']:>{w}.2f}{d['requests'] / d['eval_s']:>{w}.1f}"
              f"{d['score_s']:>{w}.2f}{d['peak_rss_mb']:>{w}.0f}"
              + (f"   cuda peak {d['cuda_peak_allocated_mb']:.0f} MB" if "cuda_peak_allocated_mb" in d else ""))
    print(f"speed-up (lm-eval eval s / ours eval s): {ratio:.2f}x end to end, {score_ratio:.2f}x model part "
          f"(goal >= 1.5x); max |Δloglik| {cmp['max_abs_delta_loglik']:.2e}; prediction agreement "
          f"{100 * cmp['prediction_agreement']:.2f}% over {cmp['examples_compared']} examples")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())

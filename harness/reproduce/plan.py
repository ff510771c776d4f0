"""`bench reproduce --plan`: every step with its command, hub needs, and GPU-hours and memory estimated from the
efficiency module's analytic model (no GPU, no hub, nothing written).

How each figure is derived (also printed under the table):

- **run** (zero-shot eval): per task, rows = examples x candidates of a uniform row of the task's mean token length;
  ``harness.efficiency.estimate.roofline`` gives the throughput ceiling of the model's true architecture (shipped
  config, built on the meta device) at the batch the command uses (encoders: ``--batch-size``; vLLM: rows that fit
  its 4,096-token engine step). Time = examples / (ceiling x utilisation) + a fixed host overhead per batch
  + weight load (+ vLLM start). With ``--tensor-parallel-size N`` the ceiling scales with N GPUs (ideal) and
  GPU-hours count all N.
- **train**: FLOPs = 3 x forward FLOPs per token (forward + backward) x padded tokens per statement x statements x
  (1 - hold-out) x epochs, plus a forward over the hold-out at each check; time = FLOPs / (16-bit peak x
  utilisation) + a fixed overhead per optimizer step + weight load.
  Memory = 16 bytes per parameter (fp32 weights, gradients, two AdamW moments) + a batch of every layer's
  activations (the memory model's per-row bytes x layers) + the runtime reserve.
- **efficiency**: a fixed budget per model of the seed's set (its default probes and timed points) + weight load;
  its memory is the whole GPU (the max-batch search fills it on purpose).
- **report**: CPU only, 0 GPU-hours.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from harness.errors import UsageError
from harness.reproduce.study import Assumptions, Step, Study

GiB = 2**30
VLLM_BATCHED_TOKENS = 4096  # the vllm backend's default --max-num-batched-tokens
DEFAULT_BATCH = {"run": 32, "train": 16}  # bench run / bench train defaults
SAMPLE_EXAMPLES = 512  # uniform rows: the roofline's examples/s does not depend on how many


@dataclass(frozen=True)
class StepEstimate:
    gpus: int
    gpu_hours: float
    memory_gb: float  # per GPU, estimated peak (GiB)
    note: str  # how this figure was derived, in a few words


@dataclass(frozen=True)
class PlannedStep:
    index: int
    step: Step
    command: str
    needs_hub: tuple[str, ...]
    estimate: StepEstimate | None  # None in the stand-in plan (CPU, bundled models)


@dataclass(frozen=True)
class StudyPlan:
    mode: str
    output: str
    profile: Any  # harness.efficiency.profiles.DeviceProfile (None for the stand-in)
    steps: tuple[PlannedStep, ...]

    @property
    def total_gpu_hours(self) -> float:
        return sum(p.estimate.gpu_hours for p in self.steps if p.estimate is not None)

    def hours_by_kind(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for p in self.steps:
            if p.estimate is not None:
                out[p.step.kind] = out.get(p.step.kind, 0.0) + p.estimate.gpu_hours
        return out


def _option(argv: Sequence[str], name: str) -> str | None:
    for i, word in enumerate(argv):
        if word == name and i + 1 < len(argv):
            return argv[i + 1]
        if word.startswith(name + "="):
            return word.split("=", 1)[1]
    return None


def _csv(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


class _Costs:
    """Model costs from the presets' shipped configs, built once per model on the meta device."""

    def __init__(self) -> None:
        self._cache: dict[str, Any] = {}

    def get(self, preset: str) -> Any:
        if preset not in self._cache:
            from harness.efficiency.cost import model_cost
            from harness.models.presets import PRESETS
            from harness.models.shipped_config import load_shipped_config

            found = PRESETS.get(preset)
            if found is None or not found.shipped_config:
                raise UsageError(f"study model {preset!r} is not a hub preset with a shipped config.json")
            self._cache[preset] = model_cost(load_shipped_config(found), found.kind)
        return self._cache[preset]


def _model_of(step: Step, argv: Sequence[str]) -> str:
    model = step.model or _option(argv, "--model")
    if not model:
        raise UsageError(f"step {step.id}: no --model in its command and no model: in the study file")
    return model


def _scaled(profile: Any, gpus: int) -> Any:
    """N GPUs with tensor parallelism as one device with N x the peaks and bandwidth (an ideal split)."""
    return replace(profile, key=f"{profile.key}x{gpus}", memory_bytes=profile.memory_bytes * gpus,
                   bandwidth_bytes_per_s=profile.bandwidth_bytes_per_s * gpus,
                   peak_flops={k: v * gpus for k, v in profile.peak_flops.items()})


def _dtype(profile: Any) -> str:
    """bf16 where the device has it (what `bench run`/`bench train` pick on CUDA), else fp16 (a T4, a V100)."""
    return "bfloat16" if profile.peak_for("bfloat16") else "float16"


def _run_estimate(step: Step, argv: Sequence[str], costs: _Costs, profile: Any, a: Assumptions) -> StepEstimate:
    from harness.efficiency.estimate import GPU_RUNTIME_RESERVE_BYTES, memory_model, roofline
    from harness.efficiency.workload import Workload

    cost = costs.get(_model_of(step, argv))
    vllm = _option(argv, "--backend") == "vllm"
    gpus = int(_option(argv, "--tensor-parallel-size") or 1)
    device = _scaled(profile, gpus) if gpus > 1 else profile
    tasks = _csv(_option(argv, "--tasks"))
    if not tasks:
        raise UsageError(f"step {step.id}: give --tasks in its command (the estimate needs them)")
    seconds = 0.0
    memory = 0.0
    for task in tasks:
        if task not in a.tasks:
            raise UsageError(f"step {step.id}: task {task!r} has no size under estimates.tasks in the study file")
        w = a.tasks[task]
        tokens, longest = (w.causal_tokens, w.causal_max) if cost.kind == "causal" else (w.statement_tokens,
                                                                                          w.statement_max)
        length = max(1, round(tokens))
        batch = (max(1, VLLM_BATCHED_TOKENS // length) if vllm
                 else int(_option(argv, "--batch-size") or DEFAULT_BATCH["run"]))
        n_rows = SAMPLE_EXAMPLES * w.rows_per_example
        workload = Workload(request_kind="loglikelihood" if cost.kind == "causal" else "statement", tasks=(task,),
                            languages={}, rows=[(0,) * length] * n_rows,
                            example_of_row=[i // w.rows_per_example for i in range(n_rows)],
                            n_examples=SAMPLE_EXAMPLES, tokenizer="uniform rows (plan)", truncated=0)
        point = roofline(cost, device, workload, dtype=_dtype(profile), weight_dtype=_dtype(profile),
                         batch_size=batch, label="plan")
        if point is None:
            raise UsageError(f"--gpu {profile.key}: the profile has no 16-bit peak; choose another device profile")
        seconds += (w.examples / (point.examples_per_s * a.utilisation)
                    + math.ceil(w.examples * w.rows_per_example / batch) * a.batch_overhead_s)
        mm = memory_model(cost, profile, dtype=_dtype(profile), weight_dtype=_dtype(profile), attention="sdpa",
                          probe_length=longest)
        memory = max(memory, mm.weights_bytes / gpus + GPU_RUNTIME_RESERVE_BYTES + batch * mm.per_row_bytes / gpus)
    load = cost.weight_bytes(2) / (a.load_gb_per_s * 1e9) + (a.vllm_start_s if vllm else 0.0)
    total = seconds + load
    precision = "bf16" if _dtype(profile) == "bfloat16" else "fp16"
    at = "<=4096-token steps" if vllm else f"batch {batch}"
    note = f"{'vLLM ' if vllm else ''}roofline {precision} at {at}{f', TP {gpus}' if gpus > 1 else ''}"
    return StepEstimate(gpus, total * gpus / 3600, memory / GiB, note)


def _train_estimate(step: Step, argv: Sequence[str], costs: _Costs, profile: Any, a: Assumptions) -> StepEstimate:
    from harness.efficiency.estimate import GPU_RUNTIME_RESERVE_BYTES

    cost = costs.get(_model_of(step, argv))
    statements = step.statements or 0
    holdout = float(_option(argv, "--holdout") or 0.1)
    epochs = float(_option(argv, "--epochs") or 3.0)
    batch = int(_option(argv, "--batch-size") or DEFAULT_BATCH["train"])
    eval_every = int(_option(argv, "--eval-every") or 500)
    padded = a.train_padded_tokens
    train_rows = statements * (1 - holdout) * epochs
    steps = math.ceil(train_rows / batch)
    checks = steps // eval_every + 1
    forward = cost.flops_per_token(round(padded)) * padded
    flops = 3 * forward * train_rows + forward * statements * holdout * checks
    peak = profile.peak_for(_dtype(profile))
    if not peak:
        raise UsageError(f"--gpu {profile.key}: the profile has no 16-bit peak; choose another device profile")
    seconds = (flops / (peak * a.utilisation) + steps * a.train_step_overhead_s
               + cost.weight_bytes(4) / (a.load_gb_per_s * 1e9))
    activations = batch * cost.layers * cost.activation_bytes_per_row(round(padded), 2, "sdpa")
    memory = 16 * cost.parameters + activations + GPU_RUNTIME_RESERVE_BYTES
    return StepEstimate(1, seconds / 3600, memory / GiB,
                        f"3x forward FLOPs x {steps:,} steps of {batch} x {padded:g} padded tokens")


def _efficiency_estimate(step: Step, argv: Sequence[str], costs: _Costs, profile: Any,
                         a: Assumptions) -> StepEstimate:
    models = _csv(_option(argv, "--models"))
    if models:
        load = sum(costs.get(m).weight_bytes(2) for m in models) / (a.load_gb_per_s * 1e9)
        n = len(models)
    else:
        from harness.efficiency.runner import SEED_EFFICIENCY_MODELS

        load = sum(costs.get(m).weight_bytes(2) for m in SEED_EFFICIENCY_MODELS) / (a.load_gb_per_s * 1e9)
        n = len(SEED_EFFICIENCY_MODELS)
    seconds = n * a.efficiency_seconds_per_model + load
    return StepEstimate(1, seconds / 3600, profile.memory_bytes / GiB,
                        f"{n} models x {a.efficiency_seconds_per_model:g} s budget + load; fills the GPU")


def plan_study(study: Study, mode: str, output: str, gpu: str = "h100") -> StudyPlan:
    """The steps of `mode` in dependency order, with commands and (full study) estimates for device `gpu`."""
    profile = None
    costs = _Costs()
    if mode == "full":
        from harness.efficiency.profiles import get_profile

        if gpu.strip().lower() in ("cpu", "local-cpu"):
            raise UsageError("--gpu: give a GPU profile (see `bench list devices`); the plan estimates GPU-hours")
        profile = get_profile(gpu)
    planned: list[PlannedStep] = []
    for i, step in enumerate(study.steps_for(mode), 1):
        argv = step.argv(mode, output)
        estimate = None
        if profile is not None:
            if step.kind == "run":
                estimate = _run_estimate(step, argv, costs, profile, study.assumptions)
            elif step.kind == "train":
                estimate = _train_estimate(step, argv, costs, profile, study.assumptions)
            elif step.kind == "efficiency":
                estimate = _efficiency_estimate(step, argv, costs, profile, study.assumptions)
            else:
                estimate = StepEstimate(0, 0.0, 0.0, "CPU only (reads result files)")
        planned.append(PlannedStep(i, step, step.command(mode, output),
                                   step.needs_hub if mode == "full" else (), estimate))
    return StudyPlan(mode, output, profile, tuple(planned))


def render_plan(plan: StudyPlan, study: Study) -> str:
    """The plan as Markdown: a table with a total, GPU-hours per kind, every command, and the derivations."""
    from harness.reports.tables import markdown_table

    lines: list[str] = []
    if plan.mode == "full":
        p = plan.profile
        lines.append(f"Plan: {study.title}: {len(plan.steps)} steps, output {plan.output}, estimates for "
                     f"{p.key} ({p.name}, {p.memory_bytes / GiB:.0f} GiB) (estimated, not measured)")
    else:
        lines.append(f"Plan (stand-in): {len(plan.steps)} of {len(study.steps)} steps, output {plan.output}; "
                     f"{study.stand_in_size}")
    rows = []
    ids = {s.step.id for s in plan.steps}
    for s in plan.steps:
        e = s.estimate
        deps = [d for d in s.step.depends_on if d in ids]
        rows.append([str(s.index), s.step.id, s.step.kind, (", ".join(deps) if len(deps) <= 2
                                                           else f"{len(deps)} steps") or "–",
                     "–" if e is None else str(e.gpus), "–" if e is None else f"{e.gpu_hours:.3f}",
                     "–" if e is None or not e.gpus else f"{e.memory_gb:.1f}" + (
                         " (> GPU)" if plan.profile is not None and e.memory_gb > plan.profile.memory_bytes / GiB
                         else ""), ", ".join(s.needs_hub) or "none",
                     "–" if e is None else e.note])
    if plan.mode == "full":
        rows.append(["", "total", "", "", "", f"{plan.total_gpu_hours:.3f}", "", "", ""])
    lines += ["", markdown_table(["#", "step", "kind", "depends on", "GPUs", "est. GPU-h", "est. mem/GPU GiB",
                                  "needs hub", "estimate from"], rows, align="rllllrrll")]
    if plan.mode == "full":
        kinds = plan.hours_by_kind()
        lines += ["", "GPU-hours by kind: " + ", ".join(f"{k} {kinds.get(k, 0.0):.3f}"
                                                        for k in ("train", "run", "efficiency", "report"))
                  + f"; total {plan.total_gpu_hours:.3f}"]
    lines += ["", "Commands:"]
    lines += [f"{s.index:>3}. {s.step.id}: {s.command}" for s in plan.steps]
    if plan.mode == "full":
        a = study.assumptions
        hub = sorted({h for s in plan.steps for h in s.needs_hub})
        lines += ["", f"Needs hub access: {len(hub)} model ids ({', '.join(hub)}); training and eval data are "
                  "packaged (no dataset downloads).",
                  "", "How the estimates are derived (harness.efficiency.estimate; estimated, not measured):",
                  f"- run: per task, examples x candidates as uniform rows of the task's mean token length; the "
                  f"roofline ceiling of the model's true architecture (shipped config.json) in bf16 (fp16 where the "
                  f"device has no bf16) at the "
                  f"command's batch (vLLM: rows per {VLLM_BATCHED_TOKENS}-token step); time = examples / "
                  f"(ceiling x {a.utilisation:g} utilisation) + {a.batch_overhead_s:g} s host overhead per batch + "
                  f"weight load at {a.load_gb_per_s:g} GB/s"
                  f" (+ {a.vllm_start_s:g} s vLLM start); tensor parallel: N x the ceiling, N x the GPU-hours.",
                  f"- train: 3 x forward FLOPs x padded tokens ({a.train_padded_tokens:g} per statement in batches "
                  f"of 16; mean {a.train_mean_tokens:g}) x statements x 0.9 x epochs, + hold-out forwards; / (16-bit "
                  f"peak x {a.utilisation:g}) + {a.train_step_overhead_s:g} s per optimizer step + load; memory = 16 "
                  "B/parameter + a batch of all layers' activations.",
                  f"- efficiency: {a.efficiency_seconds_per_model:g} s per model + load; report: CPU only.",
                  "- memory per GPU: weights / GPUs + 1 GiB runtime reserve + the batch's activations at the "
                  "longest row (memory model); vLLM reserves 90% of each GPU regardless."]
    return "\n".join(lines)

"""`bench efficiency`: validate everything up front, then measure each model in its own child process.

A child starts with a clean allocator and its own peak-memory counters, and a model that takes the process
down (the kernel's out-of-memory killer) costs only its own record. Each finished model is written at once as
a schema-versioned result file (``RunResult.efficiency``, read back as an ``EfficiencyRecord``), so an
interrupted run keeps what it finished and re-running the same command resumes: a model whose result file
exists for the same settings is not measured again.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness.efficiency.spec import MeasureSpec
from harness.errors import BenchError, UsageError
from harness.results.schema import (
    RESULT_FILE,
    SCHEMA_VERSION,
    EfficiencyRecord,
    RunResult,
    as_record,
    read_result,
    write_result,
)

#: The seed paper's efficiency set (measured with random weights when no --models is given).
SEED_EFFICIENCY_MODELS = ("mdeberta-v3-base", "xlm-roberta-large", "qwen2-0.5b", "qwen2-1.5b", "gemma-2-2b",
                          "aya-23-8b", "llama-3.1-8b", "gemma-2-9b")
CHILD_MODULE = "harness.efficiency.child"


@dataclass(frozen=True)
class EfficiencyConfig:
    specs: tuple[MeasureSpec, ...]  # one per model, in order
    output_dir: str = "results"

    @property
    def models(self) -> tuple[str, ...]:
        return tuple(s.model for s in self.specs)


@dataclass
class ModelOutcome:
    model: str
    result_path: Path | None
    result: EfficiencyRecord | None  # the record as read back (typed)
    error: str | None = None
    resumed: bool = False


def local_device_profile_key(device: str = "auto") -> str:
    """The profile key of the device `--device` names (``cuda:N``: that one; else the first CUDA device), or of
    the local CPU (``cpu``, or no CUDA device)."""
    import torch

    from harness.efficiency.profiles import profile_of_cuda_device

    value = device.strip().lower()
    if value != "cpu" and torch.cuda.is_available():
        index = int(value[5:]) if value.startswith("cuda:") and value[5:].isdigit() else 0
        found, name = profile_of_cuda_device(index)
        return found.key if found else f"unknown-gpu:{name}"
    return "local-cpu"


def plan_efficiency(models: Sequence[str] | None, base: MeasureSpec, output_dir: str) -> EfficiencyConfig:
    """Check every option before any child starts; decide measure / estimate per the device at hand."""
    from harness.efficiency.profiles import get_profile
    from harness.models.presets import PRESETS
    from harness.tasks.specs import get_task

    chosen = tuple(models) if models else SEED_EFFICIENCY_MODELS
    weights = base.weights if models else ("random" if base.weights == "auto" else base.weights)
    for task in base.tasks:
        get_task(task, base.include_paths)
    if weights not in ("auto", "real", "random"):
        raise UsageError(f"--weights {weights!r}: choose auto, real or random")
    if len(set(chosen)) != len(chosen):
        raise UsageError(f"--models names a model twice: {','.join(chosen)}")
    per_model: list[str] = []
    for m in chosen:
        if m not in PRESETS and not Path(os.path.expanduser(m)).is_dir():
            raise UsageError(f"--models: {m!r} is neither a preset (see `bench list models`) nor a local directory")
        preset = PRESETS.get(m)
        hub_only = preset is not None and preset.source == "hub"
        if weights == "auto":  # real where the weights are on this machine, else the true architecture
            per_model.append("random" if hub_only else "real")
            continue
        if weights == "real" and hub_only and not base.estimate:
            raise UsageError(f"--models {m}: hub-only preset, its weights are not on this machine; "
                             "use --weights random (true architecture from its shipped config.json) or --estimate")
        per_model.append(weights)
    for name, value in (("--max-batch", base.max_batch), ("--min-iters", base.min_iters)):
        if value < 1:
            raise UsageError(f"{name} must be at least 1 (got {value})")
    if base.probe_forwards < 3:
        raise UsageError(f"--probe-forwards must be at least 3 (got {base.probe_forwards})")
    if base.min_seconds < 0:
        raise UsageError(f"--min-seconds must not be negative (got {base.min_seconds:g})")
    if base.memory_limit_bytes is not None and base.memory_limit_bytes <= 0:
        raise UsageError("--memory-limit must be a positive number of GB")
    if any(b < 1 for b in base.batch_sizes):
        raise UsageError(f"--batch-sizes must be positive integers (got {','.join(map(str, base.batch_sizes))})")
    if base.seq_len is not None and base.seq_len < 2:
        raise UsageError(f"--seq-len must be at least 2 (got {base.seq_len})")
    spec = base
    if base.profile is not None:
        wanted = get_profile(base.profile)  # UsageError for an unknown name
        here = local_device_profile_key(base.device)
        if wanted.key != here and not (wanted.kind == "cpu" and here == "local-cpu"):
            if not base.estimate:
                raise UsageError(f"--gpu {base.profile} is {wanted.name}, but this machine has "
                                 f"{'no CUDA device' if here == 'local-cpu' else here}; add --estimate for an "
                                 "analytic estimate (labelled estimated), or drop --gpu to measure this device")
            spec = replace(base, measure=False)
    specs = tuple(replace(spec, model=m, weights=w) for m, w in zip(chosen, per_model, strict=True))
    return EfficiencyConfig(specs, output_dir)


#: the schema version in an efficiency record's identity: bumped only when what is measured changes (1.3 added
#: task fields to evaluation results, nothing here)
IDENTITY_SCHEMA = "1.2"


def identity(spec: MeasureSpec) -> dict[str, Any]:
    """Everything that changes a record; equal identity = same result directory = resumable."""
    from harness.tasks.loading import manifest

    settings = asdict(spec)
    if not settings["include_paths"]:  # where task files are found is not what is measured (their data is)
        del settings["include_paths"]
    return {"schema_version": IDENTITY_SCHEMA, "kind": "efficiency", "spec": settings,
            "data_manifest": hashlib.sha256(json.dumps(manifest(), sort_keys=True).encode()).hexdigest()[:16]}


def efficiency_run_id(spec: MeasureSpec) -> str:
    digest = hashlib.sha256(json.dumps(identity(spec), sort_keys=True).encode()).hexdigest()[:12]
    slug = "".join(c if c.isalnum() or c in "._-" else "-" for c in Path(spec.model.rstrip("/")).name)[:40]
    mode = "estimate" if not spec.measure else "efficiency"
    return f"{mode}-{slug}-{digest}"


def _child_error(returncode: int, out_path: Path, stderr_tail: list[str]) -> str:
    if out_path.exists():
        try:
            payload = json.loads(out_path.read_text(encoding="utf-8"))
            if isinstance(payload, dict) and payload.get("error"):
                return str(payload["error"])
        except ValueError:
            pass
    if returncode < 0:
        name = signal.Signals(-returncode).name
        hint = " (likely the kernel's out-of-memory killer)" if name == "SIGKILL" else ""
        return f"child process killed by {name}{hint}"
    last = next((ln for ln in reversed(stderr_tail) if ln.strip()), "")
    return f"child process exited with code {returncode}: {last.strip()[:200]}"


def run_child(spec: MeasureSpec, log: Callable[[str], None]) -> dict[str, Any]:
    """Measure in a fresh interpreter; its progress lines are passed to `log`. Raises BenchError on failure."""
    with tempfile.TemporaryDirectory(prefix="bench-eff-") as tmp:
        spec_path, out_path = Path(tmp) / "spec.json", Path(tmp) / "record.json"
        spec_path.write_text(json.dumps(asdict(spec)), encoding="utf-8")
        env = dict(os.environ, PYTHONUNBUFFERED="1", TOKENIZERS_PARALLELISM="false")
        proc = subprocess.Popen([sys.executable, "-m", CHILD_MODULE, str(spec_path), str(out_path)],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        tail: list[str] = []
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip("\n")
            tail = [*tail[-20:], line]
            log(line)
        returncode = proc.wait()
        if returncode != 0:
            raise BenchError(_child_error(returncode, out_path, tail))
        payload = json.loads(out_path.read_text(encoding="utf-8"))
    if not isinstance(payload, dict) or "record" not in payload:
        raise BenchError("child process returned no record")
    record: dict[str, Any] = payload["record"]
    return record


def _result(spec: MeasureSpec, run_id: str, record: dict[str, Any], started_at: str) -> RunResult:
    return RunResult(
        schema_version=SCHEMA_VERSION, run_id=run_id,
        config={"command": "efficiency", **asdict(spec), "identity": identity(spec)},
        model={**record.get("model", {}), "weights": record.get("weights"), "kind": record.get("kind")},
        environment=record.get("environment", {}), tasks={}, samples_file="",
        timing={"started_at": started_at, "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
                **record.get("timing", {})},
        efficiency=record)


def execute_efficiency(plan: EfficiencyConfig, log: Callable[[str], None] = lambda _m: None,
                       runner: Callable[[MeasureSpec, Callable[[str], None]], dict[str, Any]] = run_child,
                       ) -> list[ModelOutcome]:
    """Measure each model (resuming finished ones); one model's failure is recorded and the next one runs."""
    outcomes: list[ModelOutcome] = []
    for spec in plan.specs:
        model = spec.model
        run_id = efficiency_run_id(spec)
        path = Path(plan.output_dir) / run_id / RESULT_FILE
        if path.exists():
            try:
                earlier = read_result(path)
            except BenchError:
                earlier = None  # unreadable: measure again
            if isinstance(earlier, EfficiencyRecord):
                outcomes.append(ModelOutcome(model, path, earlier, resumed=True))
                log(f"{model}: finished earlier ({path}), not measured again")
                continue
        started_at = datetime.now(UTC).isoformat(timespec="seconds")
        try:
            record = runner(spec, log)
        except BenchError as err:
            log(f"{model}: failed: {err}")
            outcomes.append(ModelOutcome(model, None, None, error=str(err)))
            continue
        result = _result(spec, run_id, record, started_at)
        write_result(path, result)
        saved = as_record(result)
        assert isinstance(saved, EfficiencyRecord), "an efficiency result reads as an efficiency record"
        outcomes.append(ModelOutcome(model, path, saved))
    return outcomes

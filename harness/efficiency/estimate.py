"""Analytic estimates for a device profile: max batch from a memory model, throughput from a roofline.

Everything here is labelled "estimated" wherever it is shown. The memory model is
``fixed + batch x fragmentation x activation_bytes_per_row(longest row)``, where ``fixed`` is the weights plus a
runtime reserve on a GPU (CUDA context, cuBLAS workspace), or the process's measured resident set after loading
on the local CPU (plus the bf16 copies of the Linear weights that CPU autocast makes during a forward). The
roofline bounds each batch of the real workload (same batching as the measurement) by
``max(FLOPs / peak FLOP/s, bytes moved / bandwidth)``: an upper bound on throughput (a *ceiling*), not a
prediction of it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from harness.efficiency.cost import ModelCost
from harness.efficiency.profiles import DeviceProfile
from harness.efficiency.workload import Workload

#: CUDA context + cuBLAS/cuDNN workspaces + what torch's allocator cannot hand out: kept free of the estimate.
GPU_RUNTIME_RESERVE_BYTES = 1 << 30
#: Caching-allocator slack on activations (block rounding, fragmentation between differently sized batches).
GPU_FRAGMENTATION = 1.10

BYTES_PER_VALUE = {"float32": 4, "bfloat16": 2, "float16": 2}


@dataclass(frozen=True)
class MemoryModel:
    fixed_bytes: float  # weights + runtime reserve (GPU), or measured RSS after loading (CPU)
    per_row_bytes: float  # activation bytes one row of the probe length adds (fragmentation included)
    limit_bytes: float
    weights_bytes: float
    probe_length: int

    def fits(self, batch: int) -> bool:
        return self.fixed_bytes + batch * self.per_row_bytes <= self.limit_bytes

    def max_batch(self, cap: int) -> tuple[int, int, str]:
        """(exact, largest power of two, stop reason "oom" | "cap")."""
        room = self.limit_bytes - self.fixed_bytes
        exact = max(0, math.floor(room / self.per_row_bytes)) if self.per_row_bytes > 0 else cap
        reason = "cap" if exact >= cap else "oom"
        exact = min(exact, cap)
        pow2 = 1 << (exact.bit_length() - 1) if exact > 0 else 0
        return exact, pow2, reason


def bytes_per_value(dtype: str) -> int:
    return BYTES_PER_VALUE.get(dtype, 4)


def memory_model(cost: ModelCost, profile: DeviceProfile, *, dtype: str, weight_dtype: str, attention: str,
                 probe_length: int, limit_bytes: float | None = None,
                 measured_fixed_bytes: float | None = None) -> MemoryModel:
    """Weights in `weight_dtype`, activations in `dtype`. CPU bf16 autocast (fp32 weights) is counted with fp32
    activations: autocast runs only the matmuls in bf16, norms, GELU and softmax produce fp32 tensors."""
    weights = float(cost.weight_bytes(bytes_per_value(weight_dtype)))
    gpu = profile.kind == "gpu"
    activation_dtype = weight_dtype if not gpu and weight_dtype != dtype else dtype
    per_row = cost.activation_bytes_per_row(probe_length, bytes_per_value(activation_dtype), attention,
                                            fused_attention_ok=gpu)
    if gpu:
        fixed = weights + GPU_RUNTIME_RESERVE_BYTES
        per_row *= GPU_FRAGMENTATION
    else:
        fixed = measured_fixed_bytes if measured_fixed_bytes is not None else weights
        if weight_dtype != dtype:  # CPU autocast keeps a low-precision copy of every Linear weight per forward
            fixed += cost.linear_parameters * bytes_per_value(dtype)
    limit = float(limit_bytes if limit_bytes is not None else profile.memory_bytes)
    return MemoryModel(fixed, per_row, limit, weights, probe_length)


def traffic_bytes_per_token(cost: ModelCost, dtype: str) -> float:
    """Activation bytes read and written per token in a forward (residual, q/k/v, MLP, logits): a lower bound."""
    b = bytes_per_value(dtype)
    per_layer = (4 * cost.hidden + 2 * (3 if cost.gated_mlp else 2) * cost.intermediate
                 + 2 * (cost.heads + 2 * cost.kv_heads) * cost.head_dim) * b
    logits = 3 * cost.vocab * b if cost.kind == "causal" else 0
    return cost.layers * per_layer + logits


@dataclass(frozen=True)
class RooflinePoint:
    batch_size: int
    label: str
    examples_per_s: float
    rows_per_s: float
    padded_tokens_per_s: float
    seconds_per_batch: float  # mean over the workload's batches
    bound: str  # "compute" or "memory": which limit dominates the total time
    compute_seconds: float
    memory_seconds: float


def roofline(cost: ModelCost, profile: DeviceProfile, workload: Workload, *, dtype: str, weight_dtype: str,
             batch_size: int, label: str) -> RooflinePoint | None:
    """Upper bound on throughput over the whole workload batched as the measurement batches it."""
    peak = profile.peak_for(dtype)
    if not peak or batch_size < 1:
        return None
    weights = cost.weight_bytes(bytes_per_value(weight_dtype))
    traffic = traffic_bytes_per_token(cost, dtype)
    compute = memory = total = 0.0
    rows = padded = 0
    batches = workload.batches(batch_size)
    for batch in batches:
        width = max(len(workload.rows[i]) for i in batch)
        tokens = width * len(batch)
        c = tokens * cost.flops_per_token(width) / peak
        m = (weights + tokens * traffic) / profile.bandwidth_bytes_per_s
        compute, memory, total = compute + c, memory + m, total + max(c, m)
        rows += len(batch)
        padded += tokens
    examples = rows / workload.rows_per_example
    return RooflinePoint(batch_size, label, examples / total, rows / total, padded / total, total / len(batches),
                         "compute" if compute >= memory else "memory", compute, memory)


def estimate_record(cost: ModelCost, profile: DeviceProfile, workload: Workload, *, dtype: str,
                    weight_dtype: str, attention: str, probe_length: int, cap: int, batch_sizes: Sequence[int],
                    limit_bytes: float | None = None, measured_fixed_bytes: float | None = None) -> dict[str, Any]:
    """The estimate as stored in a result file (every figure under a key that says "estimated")."""
    mm = memory_model(cost, profile, dtype=dtype, weight_dtype=weight_dtype, attention=attention,
                      probe_length=probe_length, limit_bytes=limit_bytes, measured_fixed_bytes=measured_fixed_bytes)
    exact, pow2, reason = mm.max_batch(cap)
    sizes: list[tuple[int, str]] = [(b, "matched") for b in batch_sizes if 0 < b <= max(exact, 0)]
    if exact > 0:
        sizes.append((exact, "max"))
    points = [roofline(cost, profile, workload, dtype=dtype, weight_dtype=weight_dtype, batch_size=b, label=lab)
              for b, lab in sizes]
    return {
        "label": "estimated",
        "profile": profile.key,
        "memory_model": asdict(mm),
        "max_batch": {"max_batch": exact, "max_pow2": pow2, "stop_reason": reason, "cap": cap},
        "throughput": [asdict(p) for p in points if p is not None],
        "assumptions": {
            "gpu_runtime_reserve_bytes": GPU_RUNTIME_RESERVE_BYTES if profile.kind == "gpu" else None,
            "gpu_fragmentation": GPU_FRAGMENTATION if profile.kind == "gpu" else None,
            "attention": attention, "dtype": dtype, "weight_dtype": weight_dtype,
        },
    }

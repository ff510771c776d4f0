"""Device and precision resolution, decided at run time from what this machine really has.

CPU bf16 is a trap: with ``avx512_bf16`` or AMX, bf16 autocast is 1.7-1.9x faster than fp32; on an
AVX2-only CPU it is 7-8x *slower*. So ``--dtype auto`` on CPU picks bf16 only when the CPU advertises
native bf16 support.
"""

from __future__ import annotations

import gc
import os
import platform
import re
import sys
from functools import lru_cache

import torch

from harness.errors import ModelError, UsageError
from harness.models.cache import installed_version

_CPUINFO = "/proc/cpuinfo"
#: x86 flags that make bf16 matmuls fast (AVX512-BF16 and AMX tiles).
FAST_BF16_FLAGS_X86 = frozenset({"avx512_bf16", "amx_bf16"})
#: aarch64 "Features" entry for the BF16 extension (FEAT_BF16).
FAST_BF16_FLAGS_ARM = frozenset({"bf16"})

DTYPE_ALIASES: dict[str, str] = {
    "auto": "auto",
    "fp32": "float32", "float32": "float32",
    "bf16": "bfloat16", "bfloat16": "bfloat16",
    "fp16": "float16", "float16": "float16",
}
#: What torch's runtime errors say when an allocation fails: the caching allocators ("CUDA out of memory.",
#: "CUDA error: out of memory", HIP / XPU / MPS alike), the CPU allocator (c10 alloc_cpu.cpp: "DefaultCPUAllocator:
#: can't allocate memory", "... not enough memory" on Windows) and the CUDA libraries' own allocation statuses
#: (CUBLAS_STATUS_ALLOC_FAILED, CUDNN_STATUS_ALLOC_FAILED, CUSOLVER_STATUS_ALLOC_FAILED, CUFFT_ALLOC_FAILED).
_OOM_MESSAGE = re.compile(r"out of memory|can't allocate memory|not enough memory|_ALLOC_FAILED", re.IGNORECASE)
_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16,
}

ENV_PACKAGES = (
    "torch", "transformers", "tokenizers", "peft", "accelerate", "datasets", "numpy", "statement-bench",
)


def _read_cpuinfo() -> str:
    try:
        with open(_CPUINFO, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError:
        return ""


def _cpuinfo_field(text: str, *keys: str) -> str | None:
    for line in text.splitlines():
        name, sep, value = line.partition(":")
        if sep and name.strip().lower() in keys:
            return value.strip()
    return None


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """CPU feature flags of the first processor in /proc/cpuinfo (x86 ``flags`` or aarch64 ``Features``);
    empty if the file cannot be read."""
    value = _cpuinfo_field(_read_cpuinfo(), "flags", "features")
    return frozenset(value.split()) if value else frozenset()


def cpu_has_fast_bf16(flags: frozenset[str] | set[str] | None = None) -> bool:
    """True iff the CPU computes bf16 natively: avx512_bf16 or amx_bf16 (x86), bf16 (aarch64)."""
    flags = cpu_flags() if flags is None else flags
    # x86 has no plain "bf16" flag, so one check covers both architectures.
    return bool(flags & (FAST_BF16_FLAGS_X86 | FAST_BF16_FLAGS_ARM))


@lru_cache(maxsize=1)
def cpu_model_name() -> str | None:
    """Processor name from /proc/cpuinfo (``model name``, aarch64 ``Hardware``), else platform's."""
    text = _read_cpuinfo()
    name = _cpuinfo_field(text, "model name", "hardware", "processor name")
    return name or platform.processor() or None


def resolve_device(requested: str) -> torch.device:
    """``auto`` -> cuda if torch sees one else cpu; ``cpu``; ``cuda`` / ``cuda:N`` (ModelError without
    CUDA); anything else is a UsageError."""
    value = (requested or "").strip().lower()
    if value == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if value == "cpu":
        return torch.device("cpu")
    if value == "cuda" or (value.startswith("cuda:") and value[5:].isdigit()):
        if not torch.cuda.is_available():
            raise ModelError(f"--device {value} requested but torch sees no CUDA device")
        device = torch.device(value)
        if device.index is not None and device.index >= torch.cuda.device_count():
            count = torch.cuda.device_count()
            raise ModelError(f"--device {value} requested but torch sees only {count} CUDA device(s)")
        return device
    raise UsageError(f"--device {requested!r} is not valid; choose auto, cpu, cuda or cuda:N")


def resolve_dtype(requested: str, device: torch.device | str) -> torch.dtype:
    """``auto``: cuda -> bf16 if native (not emulated) else fp16; cpu -> bf16 only with native bf16 (see module doc),
    else fp32. Explicit fp32 / bf16 are honoured; fp16 on CPU is refused (slow, many CPU kernels lack it)."""
    name = DTYPE_ALIASES.get((requested or "").strip().lower())
    if name is None:
        raise UsageError(f"--dtype {requested!r} is not valid; choose auto, fp32, bf16 or fp16")
    device_type = torch.device(device).type
    if name == "auto":
        if device_type == "cuda":
            return torch.bfloat16 if cuda_has_native_bf16(device) else torch.float16
        return torch.bfloat16 if cpu_has_fast_bf16() else torch.float32
    if name == "float16" and device_type == "cpu":
        raise UsageError("--dtype fp16 is not supported on CPU; use fp32 or bf16 (or --dtype auto)")
    return _DTYPES[name]


def bind_cuda(device: torch.device) -> torch.device:
    """Make a CUDA device the current one (``cuda`` -> ``cuda:<current>``) before loading or timing: bf16 support
    is probed, kernels' workspaces, cuBLAS handles, events and bare ``cuda`` tensors all use the current device,
    which on ``cuda:N`` must be N. Other devices are returned as they are."""
    if device.type != "cuda":
        return device
    index = torch.cuda.current_device() if device.index is None else device.index
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


def cuda_has_native_bf16(device: torch.device | str = "cuda") -> bool:
    """bf16 in hardware (compute capability >= 8, or ROCm) on ``device``. Plain ``torch.cuda.is_bf16_supported()``
    also says True on a T4/V100, where bf16 is emulated and slow (torch 2.13 torch/cuda/__init__.py: the default
    ``including_emulation=True`` tries to create a bf16 tensor). torch asks its *current* device, so ``cuda:N``
    is made current for the question (a machine may mix GPU generations)."""
    index = torch.device(device).index
    if index is None:
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    with torch.cuda.device(index):
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))


def precision_note(dtype: torch.dtype, device: torch.device | str) -> str | None:
    """A note for the result file when an explicitly chosen dtype runs emulated (bf16 on a pre-Ampere GPU)."""
    if torch.device(device).type == "cuda" and dtype == torch.bfloat16 and not cuda_has_native_bf16(device):
        return "bf16 on a GPU without native bf16 (compute capability < 8): emulated, slow; fp16 is native here"
    return None


def is_out_of_memory(err: BaseException) -> bool:
    """An allocation failure a smaller batch may avoid: ``torch.OutOfMemoryError`` (the caching allocator's
    "CUDA out of memory. Tried to allocate ..."), or one of the RuntimeError forms: ``AcceleratorError`` "CUDA
    error: out of memory" (cudaErrorMemoryAllocation), a CUDA library failing to allocate its workspace, HIP/MPS,
    and the CPU allocator (as accelerate's ``should_reduce_batch_size``, plus the libraries' ALLOC_FAILED)."""
    if isinstance(err, torch.OutOfMemoryError):
        return True
    return isinstance(err, RuntimeError) and _OOM_MESSAGE.search(str(err)) is not None


def release_memory(device: torch.device | str) -> None:
    """Collect garbage (tensors held in reference cycles) and return cached CUDA blocks to the driver. Call it
    after leaving an ``except`` block: inside it the traceback still holds the failed call's tensors."""
    gc.collect()
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()


def dtype_name(dtype: torch.dtype) -> str:
    """``float32`` / ``bfloat16`` / ``float16`` (torch's name without the ``torch.`` prefix)."""
    return str(dtype).removeprefix("torch.")


def describe_device(device: torch.device | str) -> str:
    """Human-readable device, e.g. ``cpu (AMD EPYC, 2 threads)`` or ``cuda:0 (NVIDIA H100 80GB HBM3)``."""
    dev = torch.device(device)
    if dev.type == "cuda":
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    if dev.type == "cpu":
        return f"cpu ({cpu_model_name() or 'unknown CPU'}, {torch.get_num_threads()} threads)"
    return str(dev)


def _cuda_driver() -> str | None:
    try:
        import subprocess

        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    first = out.stdout.strip().splitlines()
    return first[0].strip() if first else None


def environment() -> dict[str, object]:
    """Software and hardware facts a result file records (JSON-serialisable)."""
    cuda = torch.cuda.is_available()
    env: dict[str, object] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "packages": {name: installed_version(name) for name in ENV_PACKAGES},
        "cpu": cpu_model_name(),
        "cpu_count": os.cpu_count(),
        "cpu_fast_bf16": cpu_has_fast_bf16(),
        "torch_threads": torch.get_num_threads(),
        "cuda_available": cuda,
        "cuda_device": torch.cuda.get_device_name(0) if cuda else None,
        "cuda_device_count": torch.cuda.device_count() if cuda else 0,
        "cuda_version": torch.version.cuda,
        "cuda_driver": _cuda_driver() if cuda else None,
    }
    return env

"""Device ceilings for ``bench efficiency``: peak FLOP/s and memory bandwidth per device.

Achieved FLOP/s is reported as a percentage of a peak, and roofline estimates (is a batch compute- or
memory-bound?) need a bandwidth, so each profile carries those ceilings with the source they came from.

Conventions:

* FLOP/s are **dense** peaks (no 2:4 structured sparsity). Where a datasheet quotes only the figure "with
  sparsity" it is halved, and the profile's ``source`` says so.
* ``bfloat16`` / ``float16`` are tensor-core peaks with FP32 accumulate (what torch matmuls use).
  ``float32`` is the plain, non-tensor FP32 (CUDA-core) peak, *not* TF32: torch keeps TF32 off for matmuls
  by default, so plain FP32 is the honest ceiling for a float32 run.
* Bandwidth is bytes/s with the datasheet's decimal units (1 GB/s = 10**9 B/s, 1 TB/s = 10**12 B/s).
* ``memory_bytes`` is the datasheet capacity in binary units (80 GB -> 80 * 2**30): HBM and GDDR capacities
  are powers of two, and an A100 80GB reports exactly 80 GiB to torch. What torch reports is often a little
  less (driver reservations, ECC), e.g. an A100-SXM4-40GB reports about 39.6 GiB.
* The local-CPU profile is *measured* on this machine (``measured=True``), not taken from a datasheet. A CUDA
  device without a datasheet profile (or whose memory is far from its profile's: a MIG slice, another variant)
  gets a measured profile the same way (:func:`measured_cuda_profile`) instead of a refusal, and on a CUDA device
  with a profile the same micro-benchmarks run too, so the record shows measured peaks beside the datasheet's
  (:func:`measured_peaks_for`).
* Figures a vendor does not publish per device, or that we could not check, say ``UNCERTAIN`` in ``source``.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal, Protocol

import torch

from harness.device import DTYPE_ALIASES, cpu_has_fast_bf16, cpu_model_name
from harness.efficiency.timing import timed
from harness.errors import ModelError, UsageError, one_line

GiB = 2**30
GB_S = 1e9  # datasheet GB/s
TB_S = 1e12  # datasheet TB/s
TFLOPS = 1e12

_DTYPES = ("bfloat16", "float16", "float32")

# Vendor sources, shared by several profiles.
_A100_DATASHEET = (
    "https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/a100/pdf/nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf"
)
_H100_PAGE = "https://www.nvidia.com/en-us/data-center/h100/"
_H100_DATASHEET = "https://resources.nvidia.com/en-us-tensor-core/nvidia-tensor-core-gpu-datasheet"
_H200_PAGE = "https://www.nvidia.com/en-us/data-center/h200/"
_L4_PAGE = "https://www.nvidia.com/en-us/data-center/l4/"
_T4_DATASHEET = (
    "https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/tesla-t4/t4-tensor-core-datasheet-951643.pdf"
)
_A10_PAGE = "https://www.nvidia.com/en-us/data-center/products/a10-gpu/"
_G5_PAGE = "https://aws.amazon.com/ec2/instance-types/g5/"
_A10G_NOTE = "https://www.baseten.co/blog/nvidia-a10-vs-a10g-for-ml-model-inference/"
_ADA_WHITEPAPER = "https://images.nvidia.com/aem-dam/Solutions/geforce/ada/nvidia-ada-gpu-architecture.pdf"
_GH200_PAGE = "https://www.nvidia.com/en-us/data-center/grace-hopper-superchip/"
_GH200_DATASHEET = "https://resources.nvidia.com/en-us-grace-cpu/grace-hopper-superchip"
_L40S_PAGE = "https://www.nvidia.com/en-us/data-center/l40s/"
_L40S_DATASHEET = "https://resources.nvidia.com/en-us-l40s/l40s-datasheet-28413"
_A6000_PAGE = "https://www.nvidia.com/en-us/design-visualization/rtx-a6000/"
_GA102_WHITEPAPER = "https://www.nvidia.com/content/PDF/nvidia-ampere-ga-102-gpu-architecture-whitepaper-v2.pdf"
_V100_DATASHEET = "https://images.nvidia.com/content/technologies/volta/pdf/volta-v100-datasheet-update-us-1165301-r5.pdf"
_HGX_PAGE = "https://www.nvidia.com/en-us/data-center/hgx/"
_DGX_B200_PAGE = "https://www.nvidia.com/en-us/data-center/dgx-b200/"

_DENSE_NOTE = "float32 = plain FP32 (non-tensor, not TF32)"


@dataclass(frozen=True)
class DeviceProfile:
    """Peak compute and memory of one device; see the module docstring for units and conventions."""

    key: str
    name: str
    kind: Literal["gpu", "cpu"]
    memory_bytes: int
    bandwidth_bytes_per_s: float
    peak_flops: Mapping[str, float]
    source: str
    match: tuple[str, ...] = ()
    measured: bool = False

    def __post_init__(self) -> None:
        unknown = set(self.peak_flops) - set(_DTYPES)
        if unknown:
            raise ValueError(f"{self.key}: peak_flops keys must be among {_DTYPES}, got {sorted(unknown)}")
        object.__setattr__(self, "peak_flops", dict(self.peak_flops))  # private copy, never aliased

    def peak_for(self, dtype: str) -> float | None:
        """Dense peak FLOP/s for ``bf16``/``bfloat16``, ``fp16``/``float16`` or ``fp32``/``float32``
        (``torch.`` prefix allowed); None when the device has no such peak (T4 bf16) or the name is unknown."""
        name = canonical_dtype(dtype)
        return None if name is None else self.peak_flops.get(name)


def canonical_dtype(dtype: str) -> str | None:
    """``bf16`` -> ``bfloat16`` etc.; None for ``auto`` or anything unknown."""
    value = str(dtype).strip().lower().removeprefix("torch.")
    name = DTYPE_ALIASES.get(value)
    return None if name in (None, "auto") else name


def _flops(bf16: float | None, fp16: float, fp32: float) -> dict[str, float]:
    peaks = {"float16": fp16, "float32": fp32}
    if bf16 is not None:
        peaks["bfloat16"] = bf16
    return peaks


def _a100(memory_gb: int, form: Literal["sxm", "pcie"], bandwidth_gb_s: float) -> DeviceProfile:
    label = "SXM" if form == "sxm" else "PCIe"
    return DeviceProfile(
        key=f"a100-{memory_gb}gb-{form}",
        name=f"NVIDIA A100 {memory_gb}GB {label}",
        kind="gpu",
        memory_bytes=memory_gb * GiB,
        bandwidth_bytes_per_s=bandwidth_gb_s * GB_S,
        peak_flops=_flops(312 * TFLOPS, 312 * TFLOPS, 19.5 * TFLOPS),
        source=(
            f"NVIDIA A100 datasheet {_A100_DATASHEET}: BF16/FP16 Tensor Core 312 TFLOPS dense (624 is the "
            f"sparsity figure), FP32 19.5 TFLOPS, {bandwidth_gb_s:,.0f} GB/s for the {memory_gb}GB {label}; "
            f"{_DENSE_NOTE}"
        ),
        match=("a100",),
    )


def _hopper(key: str, name: str, memory_gb: int, bandwidth: float, sparse_tflops: float, fp32_tflops: float,
            page: str, match: str, datasheet: str = _H100_DATASHEET) -> DeviceProfile:
    dense = sparse_tflops / 2
    return DeviceProfile(
        key=key,
        name=name,
        kind="gpu",
        memory_bytes=memory_gb * GiB,
        bandwidth_bytes_per_s=bandwidth,
        peak_flops=_flops(dense * TFLOPS, dense * TFLOPS, fp32_tflops * TFLOPS),
        source=(
            f"{name} spec {page} and datasheet {datasheet}: BF16/FP16 Tensor Core "
            f"{sparse_tflops:,.0f} TFLOPS with sparsity, halved to {dense:,.1f} dense (datasheet sparsity figure "
            f"halved); FP32 {fp32_tflops:g} TFLOPS; {bandwidth / TB_S:g} TB/s; {memory_gb} GB; {_DENSE_NOTE}"
        ),
        match=(match,),
    )


def _gpu_profiles() -> list[DeviceProfile]:
    return [
        _a100(40, "sxm", 1555),
        _a100(80, "sxm", 2039),
        _a100(40, "pcie", 1555),
        _a100(80, "pcie", 1935),
        _hopper("h100-sxm", "NVIDIA H100 SXM 80GB", 80, 3.35 * TB_S, 1979, 67, _H100_PAGE, "h100"),
        _hopper("h100-pcie", "NVIDIA H100 PCIe 80GB", 80, 2.0 * TB_S, 1513, 51, _H100_PAGE, "h100"),
        _hopper("h200-sxm", "NVIDIA H200 SXM 141GB", 141, 4.8 * TB_S, 1979, 67, _H200_PAGE, "h200"),
        _hopper("h100-nvl", "NVIDIA H100 NVL 94GB", 94, 3.9 * TB_S, 1671, 60, _H100_PAGE, "h100"),
        _hopper("h200-nvl", "NVIDIA H200 NVL 141GB", 141, 4.8 * TB_S, 1671, 60, _H200_PAGE, "h200"),
        # The original GH200 (96 GB HBM3, driver name "NVIDIA GH200 480GB" after its 480 GB of LPDDR5X); the
        # 144 GB HBM3e variant (4.9 TB/s) fails the memory check in detect_cuda_profile and is measured instead.
        _hopper("gh200-96gb", "NVIDIA GH200 96GB HBM3", 96, 4.0 * TB_S, 1979, 67, _GH200_PAGE, "gh200",
                datasheet=f"NVIDIA GH200 Grace Hopper Superchip datasheet {_GH200_DATASHEET} (GPU of the 96GB "
                          f"HBM3 variant; bandwidth 'up to')"),
        DeviceProfile(
            key="l4",
            name="NVIDIA L4",
            kind="gpu",
            memory_bytes=24 * GiB,
            bandwidth_bytes_per_s=300 * GB_S,
            peak_flops=_flops(121 * TFLOPS, 121 * TFLOPS, 30.3 * TFLOPS),
            source=(
                f"NVIDIA L4 spec {_L4_PAGE}: BF16/FP16 Tensor Core 242 TFLOPS with sparsity, halved to 121 dense "
                f"(datasheet sparsity figure halved); FP32 30.3 TFLOPS; 300 GB/s; 24 GB GDDR6; {_DENSE_NOTE}"
            ),
            match=("l4",),
        ),
        DeviceProfile(
            key="t4",
            name="NVIDIA T4",
            kind="gpu",
            memory_bytes=16 * GiB,
            bandwidth_bytes_per_s=320 * GB_S,
            peak_flops=_flops(None, 65 * TFLOPS, 8.1 * TFLOPS),
            source=(
                f"NVIDIA T4 datasheet {_T4_DATASHEET}: mixed precision (FP16/FP32) 65 TFLOPS (Turing has no "
                f"sparsity, so dense), FP32 8.1 TFLOPS, 320 GB/s, 16 GB GDDR6; no bfloat16 support (Turing), so "
                f"no bf16 peak; {_DENSE_NOTE}"
            ),
            match=("t4",),
        ),
        DeviceProfile(
            key="a10g",
            name="NVIDIA A10G",
            kind="gpu",
            memory_bytes=24 * GiB,
            bandwidth_bytes_per_s=600 * GB_S,
            peak_flops=_flops(70 * TFLOPS, 70 * TFLOPS, 35 * TFLOPS),
            source=(
                f"UNCERTAIN: NVIDIA publishes no A10G datasheet (AWS-only part, EC2 G5 {_G5_PAGE}). Compute from "
                f"the A10/A10G comparison {_A10G_NOTE}: BF16/FP16 Tensor ~70 TFLOPS dense, FP32 ~35 TFLOPS "
                f"(80 SMs at ~1.71 GHz with GeForce-rate tensor cores); 24 GB GDDR6 at 600 GB/s, as the A10 "
                f"{_A10_PAGE}. The A10 datasheet's own 125 TFLOPS BF16 dense (250 with sparsity) / 31.2 FP32 does "
                f"NOT apply to the A10G; {_DENSE_NOTE}"
            ),
            match=("a10g",),
        ),
        DeviceProfile(
            key="rtx4090",
            name="NVIDIA GeForce RTX 4090",
            kind="gpu",
            memory_bytes=24 * GiB,
            bandwidth_bytes_per_s=1008 * GB_S,
            peak_flops=_flops(165.2 * TFLOPS, 165.2 * TFLOPS, 82.6 * TFLOPS),
            source=(
                f"NVIDIA Ada Lovelace architecture whitepaper {_ADA_WHITEPAPER} (RTX 4090 column): peak FP16 and "
                f"BF16 Tensor TFLOPS with FP32 accumulate 165.2 dense (330.4 with sparsity; FP16 accumulate is "
                f"faster but torch accumulates in FP32); FP32 82.6 TFLOPS; 1,008 GB/s; 24 GB GDDR6X; {_DENSE_NOTE}"
            ),
            match=("rtx 4090",),
        ),
        DeviceProfile(
            key="l40s",
            name="NVIDIA L40S",
            kind="gpu",
            memory_bytes=48 * GiB,
            bandwidth_bytes_per_s=864 * GB_S,
            peak_flops=_flops(362.05 * TFLOPS, 362.05 * TFLOPS, 91.6 * TFLOPS),
            source=(
                f"NVIDIA L40S datasheet {_L40S_DATASHEET} and spec {_L40S_PAGE}: BF16/FP16 Tensor Core 362.05 "
                f"TFLOPS dense (733 with sparsity; unlike the L40, full rate with FP32 accumulate); FP32 91.6 "
                f"TFLOPS; 864 GB/s; 48 GB GDDR6; {_DENSE_NOTE}"
            ),
            match=("l40s",),
        ),
        DeviceProfile(
            key="rtx-a6000",
            name="NVIDIA RTX A6000",
            kind="gpu",
            memory_bytes=48 * GiB,
            bandwidth_bytes_per_s=768 * GB_S,
            peak_flops=_flops(154.8 * TFLOPS, 154.8 * TFLOPS, 38.7 * TFLOPS),
            source=(
                f"NVIDIA Ampere GA102 whitepaper {_GA102_WHITEPAPER} (RTX A6000 column) and spec {_A6000_PAGE}: peak "
                f"FP16 and BF16 Tensor TFLOPS with FP32 accumulate 154.8 dense (309.7 with sparsity, the "
                f"datasheet's 'Tensor performance'); FP32 38.7 TFLOPS; 768 GB/s; 48 GB GDDR6; {_DENSE_NOTE}"
            ),
            match=("rtx a6000",),
        ),
        _v100(32, "sxm2"),
        _v100(16, "sxm2"),
        _v100(32, "pcie"),
        _v100(16, "pcie"),
        DeviceProfile(
            key="b200",
            name="NVIDIA B200 180GB",
            kind="gpu",
            memory_bytes=180 * GiB,
            bandwidth_bytes_per_s=7.7 * TB_S,
            peak_flops=_flops(2250 * TFLOPS, 2250 * TFLOPS, 75 * TFLOPS),
            source=(
                f"UNCERTAIN: NVIDIA publishes B200 figures per 8-GPU system, and they depend on the configured "
                f"power (1,000 W in HGX B200). Per-GPU column of the HGX B200 spec {_HGX_PAGE} (see also "
                f"{_DGX_B200_PAGE}): FP16/BF16 Tensor Core 4.5 PFLOPS with sparsity, halved to 2,250 TFLOPS dense "
                f"(datasheet sparsity figure halved); FP32 75 TFLOPS; 180 GB HBM3e at 7.7 TB/s (early "
                f"announcements said 192 GB and 8 TB/s); {_DENSE_NOTE}"
            ),
            match=("b200",),
        ),
    ]


def _v100(memory_gb: int, form: Literal["sxm2", "pcie"]) -> DeviceProfile:
    """Volta: tensor cores take FP16 only (no bfloat16 at all), and Volta has no sparsity, so figures are dense."""
    sxm = form == "sxm2"
    tensor, fp32 = (125.0, 15.7) if sxm else (112.0, 14.0)
    label = "SXM2" if sxm else "PCIe"
    return DeviceProfile(
        key=f"v100-{memory_gb}gb-{form}",
        name=f"NVIDIA V100 {label} {memory_gb}GB",
        kind="gpu",
        memory_bytes=memory_gb * GiB,
        bandwidth_bytes_per_s=900 * GB_S,
        peak_flops=_flops(None, tensor * TFLOPS, fp32 * TFLOPS),
        source=(
            f"NVIDIA Tesla V100 datasheet {_V100_DATASHEET} (V100 for {'NVLink' if sxm else 'PCIe'}): deep learning "
            f"(FP16 Tensor Core, FP32 accumulate) {tensor:g} TFLOPS (Volta has no sparsity, so dense); single "
            f"precision {fp32:g} TFLOPS; 900 GB/s; {memory_gb} GB HBM2; no bfloat16 support (Volta), so no bf16 "
            f"peak; {_DENSE_NOTE}"
        ),
        match=("v100",),
    )


PROFILES: dict[str, DeviceProfile] = {profile.key: profile for profile in _gpu_profiles()}

ALIASES: dict[str, str] = {
    "a100": "a100-80gb-sxm",
    "a100-sxm": "a100-80gb-sxm",
    "a100-80gb": "a100-80gb-sxm",
    "a100-40gb": "a100-40gb-sxm",
    "a100-pcie": "a100-80gb-pcie",
    "h100": "h100-sxm",
    "h100-80gb": "h100-sxm",
    "h200": "h200-sxm",
    "h200-141gb": "h200-sxm",
    "l4": "l4",
    "nvidia-l4": "l4",
    "t4": "t4",
    "tesla-t4": "t4",
    "a10g": "a10g",
    "rtx4090": "rtx4090",
    "rtx-4090": "rtx4090",
    "4090": "rtx4090",
    "h100nvl": "h100-nvl",
    "h200nvl": "h200-nvl",
    "gh200": "gh200-96gb",
    "l40s": "l40s",
    "a6000": "rtx-a6000",
    "rtxa6000": "rtx-a6000",
    "v100": "v100-32gb-sxm2",
    "v100-sxm2": "v100-32gb-sxm2",
    "v100-32gb": "v100-32gb-sxm2",
    "v100-16gb": "v100-16gb-sxm2",
    "v100-pcie": "v100-32gb-pcie",
    "b200": "b200",
}

CPU_NAMES = ("cpu", "local-cpu")


def _normalise(name: str) -> str:
    return re.sub(r"[\s_]+", "-", name.strip().lower())


def get_profile(name: str) -> DeviceProfile:
    """Profile by key or alias (case-insensitive; spaces/underscores read as ``-``); ``cpu`` / ``local-cpu``
    measure this machine (:func:`local_cpu_profile`). Unknown names are a UsageError listing the choices."""
    value = _normalise(name or "")
    if value in CPU_NAMES:
        return local_cpu_profile()
    key = value if value in PROFILES else ALIASES.get(value)
    if key is None:
        choices = ", ".join([*PROFILES, *CPU_NAMES])
        aliases = ", ".join(alias for alias in ALIASES if alias not in PROFILES)
        raise UsageError(
            f"--gpu {name!r} is not a known device profile; choose one of: {choices} (aliases: {aliases})"
        )
    return PROFILES[key]


# Names that contain a profile's match string but are a different part (other memory, clocks or power).
_OTHER_PARTS = ("laptop", "mobile", "rtx 4090 d", "fhhl", "sxm3")
# Name words that pick one variant among profiles sharing a match string ("H100 NVL" vs "H100 80GB HBM3").
_VARIANTS = ("nvl",)
# A matched profile is kept only if torch's total memory is this share of its datasheet capacity: drivers, ECC
# and reservations take up to ~9% (an L4 reports 22 of 24 GiB), a different memory variant (GH200 144GB vs 96GB)
# or a MIG slice is far outside.
_MEMORY_SHARE = (0.85, 1.05)


def _has_token(name: str, token: str) -> bool:
    """``token`` occurs in ``name`` not glued to other letters/digits ("l4" is in "nvidia l4", not "l40s")."""
    return re.search(rf"(?<![a-z0-9]){re.escape(token)}(?![a-z0-9])", name) is not None


def _narrow(candidates: list[DeviceProfile], keep: list[DeviceProfile]) -> list[DeviceProfile]:
    return keep or candidates


def detect_cuda_profile(device_name: str, total_memory_bytes: int) -> DeviceProfile | None:
    """Profile for ``torch.cuda.get_device_name()`` and the device's total memory, or None if unknown.

    Variant from the name ("nvl" -> the NVL profile, otherwise not), form factor from the name ("pcie" -> PCIe,
    otherwise SXM); capacity from a "40GB"/"80GB" in the name, else from the profile whose capacity is nearest
    ``total_memory_bytes`` (an A100-SXM4-40GB reports ~39.6 GiB). A match whose capacity is far from
    ``total_memory_bytes`` (see ``_MEMORY_SHARE``) is a different part: None, so it is measured instead.
    """
    name = " ".join(device_name.lower().split())
    if any(part in name for part in _OTHER_PARTS):
        return None
    candidates = [p for p in PROFILES.values() if any(_has_token(name, token) for token in p.match)]
    for variant in _VARIANTS:
        wanted = _has_token(name, variant)
        candidates = [p for p in candidates if p.key.endswith(f"-{variant}") == wanted]
    if len(candidates) > 1:
        pcie = "pcie" in name
        candidates = _narrow(candidates, [p for p in candidates if p.key.endswith("-pcie") == pcie])
    if len(candidates) > 1:
        size = re.search(r"(\d+)\s*gb", name)
        if size:
            candidates = _narrow(candidates, [p for p in candidates if f"-{size.group(1)}gb" in p.key])
    if len(candidates) > 1:
        candidates = [min(candidates, key=lambda p: abs(p.memory_bytes - total_memory_bytes))]
    if not candidates:
        return None
    found = candidates[0]
    low, high = _MEMORY_SHARE
    if total_memory_bytes > 0 and not low <= total_memory_bytes / found.memory_bytes <= high:
        return None
    return found


def profile_of_cuda_device(device: torch.device | int = 0) -> tuple[DeviceProfile | None, str]:
    """(profile or None, torch's device name) of a CUDA device of this machine."""
    props = torch.cuda.get_device_properties(device)
    return detect_cuda_profile(props.name, int(props.total_memory)), str(props.name)


# ---------------------------------------------------------------------------------------------- measured peaks

class PeakKernels(Protocol):
    """The micro-benchmarks behind a measured peak. Each method builds its tensors once and returns a call that
    runs the kernel once and returns its seconds, so a test can stand in for a device it does not have."""

    def matmul(self, dtype: str, n: int) -> Callable[[], float]: ...

    def copy(self, nbytes: int) -> Callable[[], float]: ...


class TorchKernels:
    """Square ``torch.mm`` and a tensor copy on ``device``, timed by :func:`harness.efficiency.timing.timed`:
    CUDA events after a synchronize on CUDA (queued kernels count, host overhead does not), perf_counter on CPU."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def matmul(self, dtype: str, n: int) -> Callable[[], float]:
        kind = getattr(torch, dtype)
        a = torch.randn(n, n, device=self.device).to(kind)
        b = torch.randn(n, n, device=self.device).to(kind)
        out = torch.empty(n, n, dtype=kind, device=self.device)
        return lambda: timed(lambda: torch.mm(a, b, out=out), self.device)[1]

    def copy(self, nbytes: int) -> Callable[[], float]:
        src = torch.ones(nbytes // 4, dtype=torch.float32, device=self.device)
        dst = torch.empty_like(src)
        return lambda: timed(lambda: dst.copy_(src), self.device)[1]


def peak_kernels(device: torch.device) -> PeakKernels:
    """The kernels :func:`measure_cuda_peaks` times (a module-level hook so tests can fake a CUDA device)."""
    return TorchKernels(device)


@dataclass(frozen=True)
class MeasuredPeaks:
    """Best-of matmul FLOP/s per dtype and copy bandwidth measured in this process (not a vendor figure)."""

    peak_flops: Mapping[str, float]
    bandwidth_bytes_per_s: float
    method: str

    def as_dict(self) -> dict[str, Any]:
        return {"peak_flops": dict(self.peak_flops), "bandwidth_bytes_per_s": self.bandwidth_bytes_per_s,
                "method": self.method}


_MATMUL_N = {"cpu": 1024, "cuda": 8192}  # CPU: 2.1 GFLOP per call, a 1 s budget on 2 cores; CUDA: 1.1 TFLOP
_COPY_BYTES = {"cpu": 256 * 2**20, "cuda": 512 * 2**20}  # well past any last-level cache (B200's L2: ~126 MB)
_MIN_REPEATS = 3


def _best_rate(work: float, call: Callable[[], float], seconds: float) -> float:
    """Best ``work / elapsed`` over repeated ``call()`` (each returns its own seconds), after one warm-up call,
    for ~``seconds`` of wall time and at least ``_MIN_REPEATS`` calls."""
    call()
    best = 0.0
    deadline = time.perf_counter() + seconds
    repeats = 0
    while repeats < _MIN_REPEATS or time.perf_counter() < deadline:
        elapsed = call()
        if elapsed > 0:
            best = max(best, work / elapsed)
        repeats += 1
    return best


def measure_peaks(kernels: PeakKernels, dtypes: tuple[str, ...], seconds: float, *, matmul_n: int,
                  copy_bytes: int) -> tuple[dict[str, float], float]:
    """(best matmul FLOP/s per dtype, best copy bytes/s counting read + write) with ``seconds`` shared evenly."""
    share = seconds / (len(dtypes) + 1)
    flops = {name: _best_rate(2.0 * matmul_n**3, kernels.matmul(name, matmul_n), share) for name in dtypes}
    return flops, _best_rate(2.0 * copy_bytes, kernels.copy(copy_bytes), share)


def _cuda_dtypes(dtype: str, major: int) -> tuple[str, ...]:
    """bfloat16 on compute capability 8.0+ (native bf16 tensor cores), float16 and float32 always, plus the
    run's own dtype so its percentage of peak is defined."""
    names = (["bfloat16"] if major >= 8 else []) + ["float16", "float32"]
    run = canonical_dtype(dtype)
    if run is not None and run not in names:
        names.append(run)
    return tuple(names)


def measure_cuda_peaks(device: torch.device, dtype: str = "auto", seconds: float = 1.0) -> MeasuredPeaks:
    """The CPU profile's micro-benchmarks on a CUDA device: best-of square matmuls per dtype and a device copy.
    Out of memory (a model already fills the device) is a one-line ModelError."""
    from harness.device import release_memory
    from harness.efficiency.batch_search import is_out_of_memory

    props = torch.cuda.get_device_properties(device)
    dtypes = _cuda_dtypes(dtype, int(getattr(props, "major", 0)))
    n, nbytes = _MATMUL_N["cuda"], _COPY_BYTES["cuda"]
    failed: Exception | None = None
    try:
        flops, bandwidth = measure_peaks(peak_kernels(device), dtypes, seconds, matmul_n=n, copy_bytes=nbytes)
    except Exception as err:
        if not is_out_of_memory(err):
            raise
        failed = err
    if failed is not None:  # released past the except block, whose frames still held the benchmark's tensors
        release_memory(device)
        raise ModelError(f"cannot measure the peaks of {props.name}: out of memory "
                         f"({one_line(failed, 120)})") from failed
    tf32 = "on" if torch.backends.cuda.matmul.allow_tf32 else "off"
    method = (
        f"measured on this machine, not a vendor figure: best-of {n}x{n} torch.mm ({', '.join(flops)}) timed with "
        f"CUDA events after a synchronize; float32 with TF32 {tf32} (torch.backends.cuda.matmul.allow_tf32); "
        f"bandwidth = best-of {nbytes // 2**20} MB device copy counting read+write bytes; ~{seconds:g} s in all"
    )
    return MeasuredPeaks(flops, bandwidth, method)


def measured_cuda_profile(device: torch.device, dtype: str = "auto", seconds: float = 1.0) -> DeviceProfile:
    """A profile for a CUDA device no datasheet profile matches: its own measured peaks and torch's capacity."""
    props = torch.cuda.get_device_properties(device)
    peaks = measure_cuda_peaks(device, dtype, seconds)
    return DeviceProfile(
        key="local-gpu",
        name=f"{props.name} (no datasheet profile)",
        kind="gpu",
        memory_bytes=int(props.total_memory),
        bandwidth_bytes_per_s=peaks.bandwidth_bytes_per_s,
        peak_flops=peaks.peak_flops,
        source=f"{peaks.method}; memory = torch's total_memory; no datasheet profile matches {props.name!r}",
        measured=True,
    )


def measured_peaks_for(profile: DeviceProfile, device: torch.device, dtype: str = "auto",
                       seconds: float = 1.0) -> MeasuredPeaks | None:
    """Measured peaks to show beside ``profile``'s: a measured profile's own, else (CUDA) measured now, else None
    (an estimate for a device this machine does not have, or no memory left beside the model: the datasheet
    profile still holds, so that run goes on)."""
    if profile.measured:
        return MeasuredPeaks(profile.peak_flops, profile.bandwidth_bytes_per_s, profile.source)
    if device.type != "cuda":
        return None
    try:
        return measure_cuda_peaks(device, dtype, seconds)
    except ModelError:
        return None


# ---------------------------------------------------------------------------------------------- local CPU

def _total_ram_bytes() -> int:
    """MemTotal from /proc/meminfo, else pages * page size."""
    try:
        with open("/proc/meminfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))


@lru_cache(maxsize=16)
def _measure_cpu(threads: int, dtypes: tuple[str, ...], seconds: float) -> tuple[dict[str, float], float]:
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return measure_peaks(TorchKernels(torch.device("cpu")), dtypes, seconds, matmul_n=_MATMUL_N["cpu"],
                             copy_bytes=_COPY_BYTES["cpu"])
    finally:
        torch.set_num_threads(previous)


def _cpu_dtypes(dtype: str) -> tuple[str, ...]:
    """float32 always; bfloat16 when the CPU has native bf16, or when it is the run's dtype (so the run's
    percentage of peak is defined even on a CPU that emulates bf16)."""
    name = canonical_dtype(dtype)
    if name is None:
        raise UsageError(f"--dtype {dtype!r} is not valid for a CPU profile; choose fp32 or bf16")
    if cpu_has_fast_bf16() or name == "bfloat16":
        return ("float32", "bfloat16")
    return ("float32",)


def local_cpu_profile(threads: int | None = None, dtype: str = "float32", memory_limit_bytes: int | None = None,
                      *, seconds: float = 1.0) -> DeviceProfile:
    """Measured profile of this machine's CPU: best-of square ``torch.mm`` FLOP/s (float32, plus bfloat16, see
    :func:`_cpu_dtypes`) on ``threads`` (default: torch's current count) and best-of 256 MB copy bandwidth,
    spending about ``seconds`` in all. Cached per (threads, dtypes, seconds) for the process."""
    n_threads = threads if threads is not None else torch.get_num_threads()
    if n_threads < 1:
        raise UsageError(f"--threads must be at least 1, got {n_threads}")
    flops, bandwidth = _measure_cpu(n_threads, _cpu_dtypes(dtype), float(seconds))
    memory = memory_limit_bytes if memory_limit_bytes is not None else _total_ram_bytes()
    memory_note = "the --memory-limit given" if memory_limit_bytes is not None else "MemTotal of /proc/meminfo"
    return DeviceProfile(
        key="local-cpu",
        name=f"{cpu_model_name() or 'unknown CPU'} ({n_threads} threads)",
        kind="cpu",
        memory_bytes=int(memory),
        bandwidth_bytes_per_s=bandwidth,
        peak_flops=flops,
        source=(
            f"measured on this machine, not a vendor figure: best-of {_MATMUL_N['cpu']}x{_MATMUL_N['cpu']} "
            f"torch.mm ({', '.join(flops)}; plain tensors, no autocast) on {n_threads} threads; bandwidth = best-of "
            f"{_COPY_BYTES['cpu'] // 2**20} MB tensor copy counting read+write bytes; ~{seconds:g} s in all; "
            f"memory = {memory_note}"
        ),
        measured=True,
    )


def profile_table() -> list[dict[str, object]]:
    """One row per GPU profile for printing: capacity in GB (binary, as on the datasheet), GB/s, TFLOP/s."""

    def tflops(profile: DeviceProfile, dtype: str) -> float | None:
        peak = profile.peak_for(dtype)
        return None if peak is None else round(peak / TFLOPS, 1)

    return [
        {
            "key": p.key,
            "name": p.name,
            "memory_gb": round(p.memory_bytes / GiB, 1),
            "bandwidth_gb_s": round(p.bandwidth_bytes_per_s / GB_S, 1),
            "bf16_tflops": tflops(p, "bf16"),
            "fp16_tflops": tflops(p, "fp16"),
            "fp32_tflops": tflops(p, "fp32"),
            "source": p.source,
        }
        for p in PROFILES.values()
    ]

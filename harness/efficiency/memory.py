"""Peak memory of one measured phase: torch's allocator on CUDA, the process's resident set on CPU.

On CPU the peak resident set (``VmHWM``) is reset before each phase by writing ``5`` to
``/proc/self/clear_refs`` (Linux >= 4.0), so every probe and throughput run gets its own peak. ``--memory-limit``
bounds that peak: on CUDA through torch's per-process memory fraction (the allocator then raises its own
out-of-memory error), on CPU by checking the peak after each forward (`check_limit` raises `OutOfMemory`).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
from dataclasses import dataclass

import torch

from harness.device import release_memory as device_release_memory
from harness.efficiency.batch_search import OutOfMemory

_STATUS = "/proc/self/status"
_CLEAR_REFS = "/proc/self/clear_refs"
#: Memory is counted in binary gigabytes, as GPU vendors label capacity (an "80GB" A100 has 80 x 2**30 bytes).
GB = 2**30


def _status_bytes(field: str) -> int | None:
    try:
        with open(_STATUS, encoding="utf-8") as fh:
            text = fh.read()
    except OSError:
        return None
    found = re.search(rf"^{field}:\s+(\d+)\s+kB", text, re.MULTILINE)
    return int(found.group(1)) * 1024 if found else None


def rss_bytes() -> int | None:
    return _status_bytes("VmRSS")


def peak_rss_bytes() -> int | None:
    peak = _status_bytes("VmHWM")
    if peak is not None:
        return peak
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # lifetime peak (not resettable)


def reset_peak_rss() -> bool:
    """Start a new peak-RSS window; False where the kernel does not allow it (the peak is then lifetime)."""
    try:
        with open(_CLEAR_REFS, "w", encoding="ascii") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def release_memory(device: torch.device) -> None:
    """After an out-of-memory probe: `harness.device.release_memory` (garbage, torch's CUDA cache), and on CPU
    also return freed heap pages (glibc), since the next probe's peak RSS is measured. Call it outside the
    ``except`` block: the traceback keeps the failed forward's tensors alive until then."""
    device_release_memory(device)
    if device.type == "cuda":
        return
    with contextlib.suppress(OSError, AttributeError):  # not glibc
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def available_memory_bytes() -> int | None:
    try:
        with open("/proc/meminfo", encoding="utf-8") as fh:
            found = re.search(r"^MemAvailable:\s+(\d+)\s+kB", fh.read(), re.MULTILINE)
        return int(found.group(1)) * 1024 if found else None
    except OSError:
        pages = os.sysconf("SC_AVPHYS_PAGES") if hasattr(os, "sysconf") else None
        return int(pages) * os.sysconf("SC_PAGE_SIZE") if pages else None


@dataclass
class MemoryTracker:
    """Peak memory between `reset()` and `peak()`; `limit_bytes` is what a probe may use (None = the device's)."""

    device: torch.device
    limit_bytes: int | None = None

    def __post_init__(self) -> None:
        if self.device.type == "cuda" and self.limit_bytes is not None:
            total = torch.cuda.get_device_properties(self.device).total_memory
            torch.cuda.set_per_process_memory_fraction(min(1.0, self.limit_bytes / total), self.device)

    def reset(self) -> None:
        """Start a new peak window. On CUDA the cache is emptied first: reset_peak_memory_stats sets the peaks to
        the current values, and blocks a failed probe left cached would count as this window's reserved peak."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            device_release_memory(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        reset_peak_rss()

    def peak(self) -> dict[str, float | None]:
        out: dict[str, float | None] = {"rss": peak_rss_bytes(), "torch_allocated": None, "torch_reserved": None}
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            out["torch_allocated"] = float(torch.cuda.max_memory_allocated(self.device))
            out["torch_reserved"] = float(torch.cuda.max_memory_reserved(self.device))
        return out

    def peak_used(self) -> float:
        """A probe's peak: torch's max allocated on CUDA (the tensors' own bytes; reserved adds cached blocks and
        fragmentation, which a failed probe can leave behind), the process's peak RSS on CPU."""
        peak = self.peak()
        value = peak["torch_allocated"] if self.device.type == "cuda" else peak["rss"]
        return float(value or 0.0)

    def check_limit(self) -> float:
        """The peak so far; raises OutOfMemory when it is over the CPU limit (CUDA enforces its own)."""
        used = self.peak_used()
        if self.device.type != "cuda" and self.limit_bytes is not None and used > self.limit_bytes:
            raise OutOfMemory(f"peak RSS {used / GB:.3f} GB over --memory-limit {self.limit_bytes / GB:g} GB")
        return used

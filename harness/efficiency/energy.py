"""Energy per throughput point: the GPU's NVML energy counter read before and after the timed batches.

``nvmlDeviceGetTotalEnergyConsumption`` is the board's energy in millijoules since the driver was last loaded
(Volta and newer; older parts and some virtualised GPUs answer ``NVML_ERROR_NOT_SUPPORTED``). The difference of
two reads is the energy of the interval: the forwards, the idle time between them, and anything else running on
the same board (other processes, other MIG instances), so J / 1k examples is the board's cost of the serving
loop, not of the kernels alone. Recent GPUs refresh the counter every ~20-100 ms, so a window under a second is
flagged as coarse. ``pynvml`` (package ``nvidia-ml-py``) is imported only when a CUDA device is measured. A CPU
has no such counter here: its points say "not measured (CPU)" rather than leaving the field out.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from typing import Any

import torch

NOT_MEASURED_CPU = "not measured (CPU)"
SOURCE = "NVML nvmlDeviceGetTotalEnergyConsumption (board energy, mJ since driver load)"
COARSE_WINDOW_S = 1.0  # the counter's refresh interval is up to ~0.1 s


def not_measured(reason: str, detail: str | None = None) -> dict[str, Any]:
    """A point's energy when there is no reading: explicit nulls and a short reason (what the report shows)."""
    return {"joules": None, "joules_per_1k_examples": None, "reason": reason, "detail": detail}


@dataclass
class EnergyWindow:
    """One interval on a meter: the counter (mJ) and the wall clock at its start."""

    meter: EnergyMeter
    start_mj: int | None
    started: float

    def stop(self, examples: float) -> dict[str, Any]:
        """The interval's energy record for ``examples`` examples (joules and J per 1,000 examples)."""
        seconds = time.perf_counter() - self.started
        if self.start_mj is None:
            return not_measured(self.meter.reason or "not measured", self.meter.detail)
        end_mj, failure = self.meter.read_mj()
        if end_mj is None:
            return not_measured(failure or "not measured", self.meter.detail)
        joules = (end_mj - self.start_mj) / 1000.0
        return {
            "joules": joules,
            "joules_per_1k_examples": joules * 1000.0 / examples if examples > 0 else None,
            "mean_watts": joules / seconds if seconds > 0 else None, "window_s": seconds, "examples": examples,
            "source": SOURCE, "device_mapping": self.meter.mapping, "reason": None,
            "detail": (f"coarse: a {seconds:.2f} s window, the counter refreshes every ~20-100 ms"
                       if seconds < COARSE_WINDOW_S else None),
        }


@dataclass
class EnergyMeter:
    """NVML's energy counter of one CUDA device; with no ``handle``, ``reason`` says why there is no reading."""

    nvml: Any = None
    handle: Any = None
    reason: str | None = None  # short, shown in the report table
    detail: str | None = None  # the longer why, kept in the record
    mapping: str | None = None  # how the CUDA device was found among NVML's devices

    def read_mj(self) -> tuple[int | None, str | None]:
        """(counter in mJ, None) or (None, short reason) when the read fails."""
        if self.nvml is None or self.handle is None:
            return None, self.reason
        try:
            return int(self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle)), None
        except self.nvml.NVMLError as err:
            return None, _reason(self.nvml, err)

    def start(self) -> EnergyWindow:
        begin, _ = self.read_mj()
        return EnergyWindow(self, begin, time.perf_counter())

    def close(self) -> None:
        if self.nvml is not None:
            with contextlib.suppress(self.nvml.NVMLError):
                self.nvml.nvmlShutdown()
            self.nvml = self.handle = None


def _reason(nvml: Any, err: BaseException) -> str:
    if getattr(err, "value", None) == getattr(nvml, "NVML_ERROR_NOT_SUPPORTED", object()):
        return "not measured (no energy counter: NVML_ERROR_NOT_SUPPORTED)"
    return f"not measured (NVML: {err})"


def _nvml_handle(nvml: Any, device: torch.device) -> tuple[Any, str]:
    """(NVML handle, how it was found). CUDA and NVML number devices differently (CUDA_VISIBLE_DEVICES renumbers,
    CUDA's default order is fastest first, NVML's is PCI bus order), so the PCI bus id torch reports is used
    where this torch has it; else a numeric or GPU-UUID entry of CUDA_VISIBLE_DEVICES; else the CUDA index."""
    index = device.index if device.index is not None else torch.cuda.current_device()
    props = torch.cuda.get_device_properties(index)
    bus, slot = getattr(props, "pci_bus_id", None), getattr(props, "pci_device_id", None)
    if isinstance(bus, int) and isinstance(slot, int):
        domain = getattr(props, "pci_domain_id", 0)
        pci = f"{domain if isinstance(domain, int) else 0:08X}:{bus:02X}:{slot:02X}.0"
        return nvml.nvmlDeviceGetHandleByPciBusId(pci), f"PCI bus id {pci} (from torch.cuda.get_device_properties)"
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    entry = visible[index] if index < len(visible) else None
    if entry is not None and entry.isdigit():
        return (nvml.nvmlDeviceGetHandleByIndex(int(entry)),
                f"NVML index {entry} = CUDA_VISIBLE_DEVICES entry {index} (torch gives no PCI bus id)")
    if entry is not None and entry.startswith("GPU-"):
        return nvml.nvmlDeviceGetHandleByUUID(entry), f"UUID {entry} = CUDA_VISIBLE_DEVICES entry {index}"
    return (nvml.nvmlDeviceGetHandleByIndex(index),
            f"NVML index {index} = CUDA index (torch gives no PCI bus id; wrong if CUDA_DEVICE_ORDER is not "
            "PCI_BUS_ID and the machine has unlike GPUs)")


def open_energy_meter(device: torch.device) -> EnergyMeter:
    """A meter on ``device``: NVML's counter on CUDA, else (CPU, or no NVML, or no counter) a meter whose points
    carry an explicit "not measured" reason. Never raises for a missing counter."""
    if device.type != "cuda":
        kind = "CPU" if device.type == "cpu" else device.type
        return EnergyMeter(reason=f"not measured ({kind})", detail="NVML energy counters exist on NVIDIA GPUs only")
    try:
        import pynvml as nvml
    except ImportError:
        return EnergyMeter(reason="not measured (pynvml not installed)",
                           detail="pip install nvidia-ml-py for the NVML energy counter")
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as err:
        return EnergyMeter(reason=_reason(nvml, err), detail="nvmlInit failed")
    meter = EnergyMeter(nvml=nvml)
    try:
        meter.handle, meter.mapping = _nvml_handle(nvml, device)
        _, failure = meter.read_mj()
    except nvml.NVMLError as err:
        failure = _reason(nvml, err)
    if failure is not None:
        meter.close()
        return EnergyMeter(reason=failure, detail="the counter needs a Volta or newer GPU with driver support")
    return meter

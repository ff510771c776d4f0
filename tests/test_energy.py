"""Energy next to throughput (issue 13 item 13): NVML's energy counter around each throughput point on CUDA,
an explicit "not measured" on CPU and on GPUs without the counter. NVML is a double in sys.modules."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
import torch

from harness.efficiency import energy
from harness.efficiency.energy import NOT_MEASURED_CPU, open_energy_meter
from harness.efficiency.measure import throughput
from harness.efficiency.spec import MeasureSpec
from harness.reports.efficiency import throughput_table
from harness.results.schema import RunResult

NOT_SUPPORTED = 3  # NVML_ERROR_NOT_SUPPORTED in nvml.h and pynvml


class FakeNVMLError(Exception):
    def __init__(self, value: int) -> None:
        super().__init__(f"NVML error {value}")
        self.value = value


def fake_pynvml(step_mj: int = 24_000, supported: bool = True) -> tuple[ModuleType, dict[str, Any]]:
    """A `pynvml` whose energy counter advances by ``step_mj`` millijoules at every read."""
    state: dict[str, Any] = {"counter": 5_000_000, "reads": 0, "init": 0, "shutdown": 0, "handles": []}
    nvml = ModuleType("pynvml")
    nvml.NVMLError = FakeNVMLError  # type: ignore[attr-defined]
    nvml.NVML_ERROR_NOT_SUPPORTED = NOT_SUPPORTED  # type: ignore[attr-defined]

    def init() -> None:
        state["init"] += 1

    def shutdown() -> None:
        state["shutdown"] += 1

    def by_pci(bus_id: str) -> str:
        state["handles"].append(("pci", bus_id))
        return f"handle:{bus_id}"

    def by_index(index: int) -> str:
        state["handles"].append(("index", index))
        return f"handle:{index}"

    def total_energy(handle: str) -> int:
        if not supported:
            raise FakeNVMLError(NOT_SUPPORTED)
        state["reads"] += 1
        state["counter"] += step_mj
        return int(state["counter"])

    for name, fn in (("nvmlInit", init), ("nvmlShutdown", shutdown), ("nvmlDeviceGetHandleByPciBusId", by_pci),
                     ("nvmlDeviceGetHandleByIndex", by_index),
                     ("nvmlDeviceGetTotalEnergyConsumption", total_energy)):
        setattr(nvml, name, fn)
    return nvml, state


@pytest.fixture
def cuda_props(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    props = SimpleNamespace(name="NVIDIA H100 80GB HBM3", total_memory=85_520_809_984, major=9, minor=0,
                            pci_bus_id=0x3B, pci_device_id=0, pci_domain_id=0)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device=None: props)
    return props


class FakeModel:
    """A TimedModel stand-in on the CPU (the forward does nothing), so the point's examples are exact."""

    device = torch.device("cpu")

    def inputs(self, rows: list[tuple[int, ...]], pad_to: int | None = None) -> dict[str, torch.Tensor]:
        width = pad_to or max(len(r) for r in rows)
        return {"input_ids": torch.zeros(len(rows), width, dtype=torch.long)}

    def forward(self, inputs: dict[str, torch.Tensor]) -> None:
        return None


class FakeWorkload:
    rows_per_example = 2.0

    def __init__(self, n_rows: int) -> None:
        self.rows = [tuple(range(5 + i % 3)) for i in range(n_rows)]

    def batches(self, batch_size: int, seed: int = 0) -> list[list[int]]:
        return [list(range(i, min(i + batch_size, len(self.rows)))) for i in range(0, len(self.rows), batch_size)]


class FakeTracker:
    limit_bytes = None

    def reset(self) -> None:
        return None

    def peak(self) -> dict[str, Any]:
        return {"rss": 1}


def run_point(meter: Any = None) -> dict[str, Any]:
    spec = MeasureSpec(model="fake", min_iters=12, min_seconds=0.0, warmup=1)
    cost = SimpleNamespace(flops_per_token=lambda width: 1e6)
    profile = SimpleNamespace(peak_for=lambda dtype: 1e12)
    return throughput(FakeModel(), FakeWorkload(64), cost, spec, FakeTracker(), 8, "matched",  # type: ignore[arg-type]
                      profile, "float32", meter)  # type: ignore[arg-type]


def test_joules_per_1k_examples_from_the_nvml_counter(monkeypatch: pytest.MonkeyPatch,
                                                     cuda_props: SimpleNamespace) -> None:
    nvml, state = fake_pynvml(step_mj=24_000)
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    meter = open_energy_meter(torch.device("cuda", 0))
    assert meter.reason is None
    assert state["handles"] == [("pci", "00000000:3B:00.0")]  # PCI bus id from torch, not the CUDA index
    assert "PCI bus id 00000000:3B:00.0" in (meter.mapping or "")
    point = run_point(meter)
    meter.close()
    # 12 timed batches of 8 rows, 2 rows per example: 48 examples; the counter moved 24,000 mJ between the read
    # before the timed batches and the read after them (the probe at open is one read earlier)
    assert point["iterations"] == 12 and point["examples_per_s"] * point["seconds"] == pytest.approx(48)
    e = point["energy"]
    assert e["joules"] == 24.0
    assert e["examples"] == 48.0
    assert e["joules_per_1k_examples"] == 500.0  # 24 J / 48 examples * 1000
    assert e["source"].startswith("NVML nvmlDeviceGetTotalEnergyConsumption")
    assert e["reason"] is None and e["mean_watts"] > 0
    assert state["reads"] == 3 and state["init"] == 1 and state["shutdown"] == 1
    table = throughput_table([RunResult("1.2", "r", {}, {"model": "fake"}, {}, {}, "",
                                        efficiency={"model": {"model": "fake"}, "throughput": [point]})])
    assert table.headers[2:4] == ["examples/s", "J / 1k examples"]
    assert table.rows[0][3] == "500.0"
    # with a device price (bench report --gpu-price): examples per US$ between speed and energy
    priced = throughput_table([RunResult("1.2", "r", {}, {"model": "fake"}, {}, {}, "",
                                         efficiency={"model": {"model": "fake"}, "throughput": [point]})],
                              gpu_price_per_hour=2.0)
    assert priced.headers[2:5] == ["examples/s", "examples / US$ at 2 $/h", "J / 1k examples"]
    assert priced.rows[0][3] == f"{point['examples_per_s'] * 1800:,.0f}" and priced.rows[0][4] == "500.0"
    assert len(priced.headers) == len(priced.rows[0]) == len(table.headers) + 1


def test_cpu_points_say_energy_was_not_measured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # importing it would fail: the CPU path must not try
    point = run_point()  # the meter is opened for the point's own device: the CPU
    assert point["energy"]["joules"] is None and point["energy"]["joules_per_1k_examples"] is None
    assert point["energy"]["reason"] == NOT_MEASURED_CPU == "not measured (CPU)"
    table = throughput_table([RunResult("1.2", "r", {}, {"model": "fake"}, {}, {}, "",
                                        efficiency={"model": {"model": "fake"}, "throughput": [point]})])
    assert table.rows[0][3] == "not measured (CPU)"
    old = {k: v for k, v in point.items() if k != "energy"}  # a record written before energy existed
    table = throughput_table([RunResult("1.2", "r", {}, {"model": "fake"}, {}, {}, "",
                                        efficiency={"model": {"model": "fake"}, "throughput": [old]})])
    assert table.rows[0][3] == "–"


def test_gpu_without_the_counter_is_not_measured_with_the_reason(monkeypatch: pytest.MonkeyPatch,
                                                                cuda_props: SimpleNamespace) -> None:
    nvml, state = fake_pynvml(supported=False)
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    meter = open_energy_meter(torch.device("cuda", 0))
    assert meter.reason == "not measured (no energy counter: NVML_ERROR_NOT_SUPPORTED)"
    assert state["shutdown"] == 1  # NVML released at once
    point = run_point(meter)
    assert point["energy"]["joules_per_1k_examples"] is None
    assert point["energy"]["reason"] == "not measured (no energy counter: NVML_ERROR_NOT_SUPPORTED)"


def test_no_pynvml_or_no_driver_is_not_measured(monkeypatch: pytest.MonkeyPatch,
                                               cuda_props: SimpleNamespace) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)
    assert open_energy_meter(torch.device("cuda", 0)).reason == "not measured (pynvml not installed)"
    nvml, _ = fake_pynvml()

    def no_driver() -> None:
        raise FakeNVMLError(9)  # NVML_ERROR_DRIVER_NOT_LOADED

    nvml.nvmlInit = no_driver  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    assert open_energy_meter(torch.device("cuda", 0)).reason == "not measured (NVML: NVML error 9)"


def test_without_a_pci_bus_id_the_index_maps_through_cuda_visible_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    props = SimpleNamespace(name="NVIDIA L4", total_memory=23_580_639_232, major=8, minor=9)  # no pci_* fields
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device=None: props)
    nvml, state = fake_pynvml()
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5,2")
    meter = open_energy_meter(torch.device("cuda", 1))
    assert state["handles"] == [("index", 2)] and "CUDA_VISIBLE_DEVICES entry 1" in (meter.mapping or "")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    meter = open_energy_meter(torch.device("cuda", 1))
    assert state["handles"][-1] == ("index", 1) and "CUDA index" in (meter.mapping or "")


def test_pynvml_is_imported_only_to_open_a_cuda_meter() -> None:
    """torch itself may import pynvml; ours must not need it at import time nor on the CPU path."""
    code = ("import sys; sys.modules['pynvml'] = None; import torch; "
            "import harness.efficiency.energy as e, harness.efficiency.measure, harness.reports.efficiency; "
            "print(e.open_energy_meter(torch.device('cpu')).reason)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "not measured (CPU)"
    source = Path(energy.__file__).read_text(encoding="utf-8")
    top_level = [node for node in ast.parse(source).body if isinstance(node, ast.Import | ast.ImportFrom)]
    assert not any("pynvml" in ast.dump(node) for node in top_level)

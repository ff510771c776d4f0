"""Device ceilings: datasheet GPU profiles, name/alias lookup, CUDA-name detection, the measured CPU profile."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from click.testing import CliRunner

from harness.cli import main
from harness.efficiency import profiles as devices
from harness.efficiency.measure import resolve_profile
from harness.efficiency.profiles import (
    ALIASES,
    PROFILES,
    DeviceProfile,
    detect_cuda_profile,
    get_profile,
    local_cpu_profile,
    measured_peaks_for,
    profile_table,
)
from harness.efficiency.spec import MeasureSpec
from harness.errors import UsageError

GiB = 2**30
REQUIRED = (
    "a100-40gb-sxm", "a100-80gb-sxm", "a100-40gb-pcie", "a100-80gb-pcie",
    "h100-sxm", "h100-pcie", "h200-sxm", "l4", "t4", "a10g", "rtx4090",
    # issue 13 item 7: cards that were refused after the model loaded
    "h100-nvl", "h200-nvl", "gh200-96gb", "l40s", "rtx-a6000", "v100-32gb-sxm2", "v100-16gb-sxm2",
    "v100-32gb-pcie", "v100-16gb-pcie", "b200",
)


# ---------------------------------------------------------------------------------------------- profiles


@pytest.mark.parametrize("key", REQUIRED)
def test_required_profile_is_complete(key: str) -> None:
    profile = PROFILES[key]
    assert profile.key == key
    assert profile.kind == "gpu"
    assert not profile.measured
    assert profile.memory_bytes > 0
    assert profile.bandwidth_bytes_per_s > 0
    assert profile.peak_flops["float16"] > 0
    assert profile.peak_flops["float32"] > 0
    assert set(profile.peak_flops) <= {"bfloat16", "float16", "float32"}
    assert all(value > 0 for value in profile.peak_flops.values())
    assert "https://" in profile.source
    assert profile.match and all(token == token.lower() for token in profile.match)
    # tensor-core peak is above plain FP32 on every listed GPU
    assert profile.peak_flops["float16"] > profile.peak_flops["float32"]


def test_no_unexpected_profiles() -> None:
    assert set(PROFILES) == set(REQUIRED)


@pytest.mark.parametrize(
    ("key", "bf16", "fp32", "bandwidth", "memory_gb"),
    [
        ("a100-40gb-sxm", 312e12, 19.5e12, 1.555e12, 40),
        ("a100-80gb-sxm", 312e12, 19.5e12, 2.039e12, 80),
        ("a100-40gb-pcie", 312e12, 19.5e12, 1.555e12, 40),
        ("a100-80gb-pcie", 312e12, 19.5e12, 1.935e12, 80),
        ("h100-sxm", 989.5e12, 67e12, 3.35e12, 80),
        ("h100-pcie", 756.5e12, 51e12, 2.0e12, 80),
        ("h200-sxm", 989.5e12, 67e12, 4.8e12, 141),
        ("l4", 121e12, 30.3e12, 300e9, 24),
        ("a10g", 70e12, 35e12, 600e9, 24),
        ("rtx4090", 165.2e12, 82.6e12, 1008e9, 24),
        ("h100-nvl", 835.5e12, 60e12, 3.9e12, 94),
        ("h200-nvl", 835.5e12, 60e12, 4.8e12, 141),
        ("gh200-96gb", 989.5e12, 67e12, 4.0e12, 96),
        ("l40s", 362.05e12, 91.6e12, 864e9, 48),
        ("rtx-a6000", 154.8e12, 38.7e12, 768e9, 48),
        ("b200", 2250e12, 75e12, 7.7e12, 180),
    ],
)
def test_datasheet_values(key: str, bf16: float, fp32: float, bandwidth: float, memory_gb: int) -> None:
    profile = PROFILES[key]
    assert profile.peak_for("bf16") == pytest.approx(bf16)
    assert profile.peak_for("fp16") == pytest.approx(bf16)  # same tensor-core rate for bf16 and fp16
    assert profile.peak_for("fp32") == pytest.approx(fp32)
    assert profile.bandwidth_bytes_per_s == pytest.approx(bandwidth)
    assert profile.memory_bytes == memory_gb * GiB


def test_a100_80gb_sxm_exact() -> None:
    a100 = PROFILES["a100-80gb-sxm"]
    assert a100.peak_flops["bfloat16"] == 312e12
    assert a100.bandwidth_bytes_per_s == 2.039e12
    assert a100.memory_bytes == 85_899_345_920  # what torch reports for an A100-SXM4-80GB


def test_h100_is_half_the_sparsity_figure_and_says_so() -> None:
    h100 = PROFILES["h100-sxm"]
    assert h100.peak_flops["bfloat16"] == pytest.approx(1979e12 / 2)
    assert 985e12 < h100.peak_flops["bfloat16"] < 990e12
    assert "sparsity" in h100.source and "halved" in h100.source
    # H200 has H100 SXM compute with more, faster memory
    h200 = PROFILES["h200-sxm"]
    assert h200.peak_flops == h100.peak_flops
    assert h200.bandwidth_bytes_per_s > h100.bandwidth_bytes_per_s
    assert h200.memory_bytes > h100.memory_bytes


def test_t4_has_no_bf16() -> None:
    t4 = PROFILES["t4"]
    assert "bfloat16" not in t4.peak_flops
    assert t4.peak_for("bf16") is None
    assert t4.peak_for("bfloat16") is None
    assert t4.peak_for("fp16") == 65e12
    assert t4.peak_for("float32") == 8.1e12


@pytest.mark.parametrize(
    ("key", "fp16", "fp32", "memory_gb"),
    [("v100-32gb-sxm2", 125e12, 15.7e12, 32), ("v100-16gb-sxm2", 125e12, 15.7e12, 16),
     ("v100-32gb-pcie", 112e12, 14e12, 32), ("v100-16gb-pcie", 112e12, 14e12, 16)],
)
def test_v100_has_fp16_tensor_cores_and_no_bf16(key: str, fp16: float, fp32: float, memory_gb: int) -> None:
    v100 = PROFILES[key]
    assert v100.peak_for("bf16") is None and "no bfloat16" in v100.source
    assert v100.peak_for("fp16") == fp16 and v100.peak_for("fp32") == fp32
    assert v100.bandwidth_bytes_per_s == 900e9 and v100.memory_bytes == memory_gb * GiB
    assert "volta-v100-datasheet" in v100.source


def test_new_profiles_say_where_each_figure_comes_from() -> None:
    assert "UNCERTAIN" in PROFILES["b200"].source and "hgx" in PROFILES["b200"].source
    assert "sparsity figure halved" in PROFILES["h100-nvl"].source
    assert "grace-hopper-superchip" in PROFILES["gh200-96gb"].source and "96GB HBM3" in PROFILES["gh200-96gb"].source
    assert "l40s-datasheet" in PROFILES["l40s"].source
    assert "ga-102" in PROFILES["rtx-a6000"].source and "FP32 accumulate" in PROFILES["rtx-a6000"].source


def test_float32_is_plain_fp32_not_tf32() -> None:
    assert PROFILES["a100-80gb-sxm"].peak_for("float32") == 19.5e12  # TF32 would be 156e12
    assert "not TF32" in PROFILES["a100-80gb-sxm"].source


def test_a10g_source_flags_uncertainty() -> None:
    assert "UNCERTAIN" in PROFILES["a10g"].source
    assert "aws.amazon.com" in PROFILES["a10g"].source


@pytest.mark.parametrize(
    ("spelling", "canonical"),
    [("bf16", "bfloat16"), ("BFLOAT16", "bfloat16"), ("fp16", "float16"), ("float16", "float16"),
     ("fp32", "float32"), ("float32", "float32"), ("torch.bfloat16", "bfloat16")],
)
def test_peak_for_accepts_dtype_spellings(spelling: str, canonical: str) -> None:
    profile = PROFILES["h100-pcie"]
    assert profile.peak_for(spelling) == profile.peak_flops[canonical]


def test_peak_for_unknown_dtype_is_none() -> None:
    assert PROFILES["l4"].peak_for("int8") is None
    assert PROFILES["l4"].peak_for("auto") is None


def test_profile_is_frozen_and_copies_its_peaks() -> None:
    peaks = {"float32": 1e12}
    profile = DeviceProfile("x", "X", "gpu", GiB, 1e9, peaks, "test")
    peaks["float32"] = 2e12
    assert profile.peak_for("fp32") == 1e12
    with pytest.raises(dataclasses.FrozenInstanceError):
        profile.key = "y"  # type: ignore[misc]
    with pytest.raises(ValueError, match="tf32"):
        DeviceProfile("x", "X", "gpu", GiB, 1e9, {"tf32": 1.0}, "test")


# ---------------------------------------------------------------------------------------------- lookup


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("a100", "a100-80gb-sxm"), ("A100", "a100-80gb-sxm"), ("a100-80gb", "a100-80gb-sxm"),
        ("a100-40gb", "a100-40gb-sxm"), ("A100-40GB-PCIE", "a100-40gb-pcie"), ("h100", "h100-sxm"),
        ("H100-PCIe", "h100-pcie"), ("h200", "h200-sxm"), ("L4", "l4"), ("t4", "t4"), ("A10G", "a10g"),
        ("rtx4090", "rtx4090"), ("4090", "rtx4090"), ("RTX 4090", "rtx4090"), ("  h100_sxm ", "h100-sxm"),
        ("H100 NVL", "h100-nvl"), ("h200-nvl", "h200-nvl"), ("GH200", "gh200-96gb"), ("L40S", "l40s"),
        ("A6000", "rtx-a6000"), ("RTX A6000", "rtx-a6000"), ("v100", "v100-32gb-sxm2"),
        ("V100-16GB", "v100-16gb-sxm2"), ("v100-pcie", "v100-32gb-pcie"), ("B200", "b200"),
    ],
)
def test_get_profile_keys_and_aliases(name: str, key: str) -> None:
    assert get_profile(name) is PROFILES[key]


def test_every_alias_points_at_a_profile() -> None:
    assert set(ALIASES.values()) <= set(PROFILES)
    assert all(alias == alias.lower() for alias in ALIASES)


def test_unknown_profile_is_a_one_line_usage_error() -> None:
    with pytest.raises(UsageError) as info:
        get_profile("mi300x")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("--gpu 'mi300x' is not a known device profile; choose one of:")
    for key in (*REQUIRED, "cpu"):
        assert key in message
    assert info.value.exit_code == 2


def test_get_profile_cpu_measures_this_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    sentinel = DeviceProfile("local-cpu", "cpu", "cpu", GiB, 1e9, {"float32": 1e9}, "measured", measured=True)
    monkeypatch.setattr(devices, "local_cpu_profile", lambda: sentinel)
    assert get_profile("cpu") is sentinel
    assert get_profile("Local-CPU") is sentinel


# ---------------------------------------------------------------------------------------------- detection


@pytest.mark.parametrize(
    ("device_name", "total_memory", "key"),
    [
        ("NVIDIA A100-SXM4-80GB", 85_899_345_920, "a100-80gb-sxm"),
        ("NVIDIA A100-SXM4-40GB", 42_505_273_344, "a100-40gb-sxm"),
        ("NVIDIA A100 80GB PCIe", 85_097_971_712, "a100-80gb-pcie"),
        ("NVIDIA A100-PCIE-40GB", 42_314_326_016, "a100-40gb-pcie"),
        ("NVIDIA H100 80GB HBM3", 85_520_809_984, "h100-sxm"),
        ("NVIDIA H100 PCIe", 85_520_809_984, "h100-pcie"),
        ("NVIDIA H200", 150_121_545_728, "h200-sxm"),
        ("NVIDIA L4", 23_580_639_232, "l4"),
        ("Tesla T4", 15_655_829_504, "t4"),
        ("NVIDIA A10G", 23_609_475_072, "a10g"),
        ("NVIDIA GeForce RTX 4090", 25_393_692_672, "rtx4090"),
        ("NVIDIA H100 NVL", 100_485_038_080, "h100-nvl"),
        ("NVIDIA H200 NVL", 150_121_545_728, "h200-nvl"),
        ("NVIDIA GH200 480GB", 102_005_473_280, "gh200-96gb"),
        ("NVIDIA L40S", 48_305_799_168, "l40s"),
        ("NVIDIA RTX A6000", 51_033_931_776, "rtx-a6000"),
        ("Tesla V100-SXM2-32GB", 34_089_730_048, "v100-32gb-sxm2"),
        ("Tesla V100-SXM2-16GB", 16_945_512_448, "v100-16gb-sxm2"),
        ("Tesla V100-PCIE-32GB", 34_089_730_048, "v100-32gb-pcie"),
        ("Tesla V100-PCIE-16GB", 16_945_512_448, "v100-16gb-pcie"),
        ("NVIDIA B200", 191_503_564_800, "b200"),
    ],
)
def test_detect_cuda_profile_real_names(device_name: str, total_memory: int, key: str) -> None:
    profile = detect_cuda_profile(device_name, total_memory)
    assert profile is not None
    assert profile.key == key


def test_detect_uses_memory_when_the_name_has_no_size() -> None:
    assert detect_cuda_profile("NVIDIA A100-SXM4", 42_505_273_344) is PROFILES["a100-40gb-sxm"]
    assert detect_cuda_profile("NVIDIA A100-SXM4", 85_899_345_920) is PROFILES["a100-80gb-sxm"]
    assert detect_cuda_profile("NVIDIA A100 PCIe", 42_314_326_016) is PROFILES["a100-40gb-pcie"]


@pytest.mark.parametrize(
    "device_name",
    [
        "NVIDIA A10", "NVIDIA L40", "NVIDIA GB200", "Tesla V100S-PCIE-32GB", "Tesla V100-FHHL-16GB",
        "Tesla V100-SXM3-32GB", "NVIDIA GeForce RTX 4090 Laptop GPU", "NVIDIA GeForce RTX 4090 D", "",
        "AMD Instinct MI300X",
    ],
)
def test_detect_unknown_or_different_part_is_none(device_name: str) -> None:
    assert detect_cuda_profile(device_name, 80 * GiB) is None


@pytest.mark.parametrize(
    ("device_name", "total_memory"),
    [
        ("NVIDIA GH200 144G HBM3e", 153_931_627_520),  # the HBM3e GH200: other memory and bandwidth
        ("NVIDIA A100-SXM4-80GB MIG 1g.10gb", 10_200_547_328),  # a seventh of the GPU
        ("NVIDIA B200", 80 * GiB),
    ],
)
def test_detect_refuses_a_match_whose_memory_is_another_part(device_name: str, total_memory: int) -> None:
    assert detect_cuda_profile(device_name, total_memory) is None


# ---------------------------------------------------------------------------------------------- local CPU


def test_local_cpu_profile_is_measured() -> None:
    limit = 3 * GiB
    profile = local_cpu_profile(threads=1, memory_limit_bytes=limit, seconds=0.2)
    assert profile.key == "local-cpu"
    assert profile.kind == "cpu"
    assert profile.measured is True
    assert profile.memory_bytes == limit
    fp32 = profile.peak_for("fp32")
    assert fp32 is not None and fp32 > 1e9
    assert profile.bandwidth_bytes_per_s > 1e8
    assert "(1 threads)" in profile.name
    assert "measured" in profile.source
    if devices.cpu_has_fast_bf16():
        bf16 = profile.peak_for("bf16")
        assert bf16 is not None and bf16 > 0
    assert profile.peak_for("fp16") is None


def test_local_cpu_profile_is_cached_and_defaults_to_ram() -> None:
    first = local_cpu_profile(threads=1, seconds=0.2)
    second = local_cpu_profile(threads=1, seconds=0.2)
    assert first.peak_flops == second.peak_flops  # same cached measurement
    assert first.bandwidth_bytes_per_s == second.bandwidth_bytes_per_s
    assert first.memory_bytes == devices._total_ram_bytes() > GiB


def test_local_cpu_profile_measures_the_runs_bf16() -> None:
    profile = local_cpu_profile(threads=1, dtype="bf16", seconds=0.2)
    bf16 = profile.peak_for("bfloat16")
    assert bf16 is not None and bf16 > 0


def test_local_cpu_profile_rejects_bad_arguments() -> None:
    with pytest.raises(UsageError):
        local_cpu_profile(threads=0, seconds=0.2)
    with pytest.raises(UsageError):
        local_cpu_profile(threads=1, dtype="int8", seconds=0.2)


# ---------------------------------------------------------------------------------------------- measured peaks


class FakeKernels:
    """Stands in for a CUDA device's matmul and copy: every call "takes" a fixed time, so the measured peaks are
    exactly work / time."""

    def __init__(self, matmul_s: dict[str, float], copy_s: float) -> None:
        self.matmul_s, self.copy_s = matmul_s, copy_s
        self.calls: list[tuple[str, int]] = []

    def matmul(self, dtype: str, n: int) -> Callable[[], float]:
        self.calls.append((dtype, n))
        return lambda: self.matmul_s[dtype]

    def copy(self, nbytes: int) -> Callable[[], float]:
        self.calls.append(("copy", nbytes))
        return lambda: self.copy_s


def fake_cuda(monkeypatch: pytest.MonkeyPatch, name: str, total_memory: int, major: int,
              kernels: FakeKernels) -> None:
    props = SimpleNamespace(name=name, total_memory=total_memory, major=major, minor=0)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device=None: props)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
    monkeypatch.setattr(devices, "peak_kernels", lambda device: kernels)


N = 8192  # the CUDA matmul size
COPY = 512 * 2**20


def test_unknown_cuda_device_gets_a_measured_profile_not_a_refusal(monkeypatch: pytest.MonkeyPatch) -> None:
    kernels = FakeKernels({"bfloat16": 0.002, "float16": 0.002, "float32": 0.05}, copy_s=0.001)
    fake_cuda(monkeypatch, "NVIDIA RTX PRO 6000 Blackwell Server Edition", 102_005_473_280, 12, kernels)
    spec = MeasureSpec(model="x", cpu_profile_seconds=0.03)
    profile, mismatch = resolve_profile(spec, torch.device("cuda", 0), "bfloat16")
    assert mismatch is None
    assert profile.key == "local-gpu" and profile.kind == "gpu" and profile.measured
    assert profile.name == "NVIDIA RTX PRO 6000 Blackwell Server Edition (no datasheet profile)"
    assert profile.memory_bytes == 102_005_473_280
    assert profile.peak_for("bf16") == 2.0 * N**3 / 0.002
    assert profile.peak_for("fp16") == 2.0 * N**3 / 0.002
    assert profile.peak_for("fp32") == 2.0 * N**3 / 0.05
    assert profile.bandwidth_bytes_per_s == 2.0 * COPY / 0.001
    assert "measured on this machine" in profile.source and "CUDA events" in profile.source
    assert ("copy", COPY) in kernels.calls and ("bfloat16", N) in kernels.calls
    # the record shows the measured profile's own peaks as its measurement
    measured = measured_peaks_for(profile, torch.device("cuda", 0), "bfloat16")
    assert measured is not None and measured.peak_flops == profile.peak_flops


def test_pre_ampere_unknown_device_measures_no_bf16_unless_the_run_uses_it(monkeypatch: pytest.MonkeyPatch) -> None:
    kernels = FakeKernels({"bfloat16": 1.0, "float16": 0.01, "float32": 0.1}, copy_s=0.01)
    fake_cuda(monkeypatch, "Quadro GV100", 34_359_738_368, 7, kernels)
    profile, _ = resolve_profile(MeasureSpec(model="x", cpu_profile_seconds=0.03), torch.device("cuda", 0), "float16")
    assert set(profile.peak_flops) == {"float16", "float32"}
    profile, _ = resolve_profile(MeasureSpec(model="x", cpu_profile_seconds=0.03), torch.device("cuda", 0), "bfloat16")
    assert profile.peak_for("bf16") == 2.0 * N**3 / 1.0


def test_known_cuda_device_is_measured_beside_its_datasheet(monkeypatch: pytest.MonkeyPatch) -> None:
    kernels = FakeKernels({"bfloat16": 0.0015, "float16": 0.0015, "float32": 0.02}, copy_s=0.0004)
    fake_cuda(monkeypatch, "NVIDIA L40S", 48_305_799_168, 8, kernels)
    profile, mismatch = resolve_profile(MeasureSpec(model="x"), torch.device("cuda", 0), "bfloat16")
    assert profile is PROFILES["l40s"] and mismatch is None  # the datasheet profile, not a measurement
    measured = measured_peaks_for(profile, torch.device("cuda", 0), "bfloat16", seconds=0.03)
    assert measured is not None
    assert measured.peak_flops == {"bfloat16": 2.0 * N**3 / 0.0015, "float16": 2.0 * N**3 / 0.0015,
                                   "float32": 2.0 * N**3 / 0.02}
    assert measured.bandwidth_bytes_per_s == 2.0 * COPY / 0.0004
    assert measured.as_dict()["method"].startswith("measured on this machine")


def test_no_measured_peaks_for_an_estimate_or_when_memory_is_full(monkeypatch: pytest.MonkeyPatch) -> None:
    assert measured_peaks_for(PROFILES["h100-sxm"], torch.device("cpu")) is None  # estimate-only

    class Full(FakeKernels):
        def matmul(self, dtype: str, n: int) -> Callable[[], float]:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 128.00 MiB")

    fake_cuda(monkeypatch, "NVIDIA H100 80GB HBM3", 85_520_809_984, 9, Full({}, 1.0))
    assert measured_peaks_for(PROFILES["h100-sxm"], torch.device("cuda", 0), seconds=0.01) is None
    from harness.errors import ModelError

    with pytest.raises(ModelError, match=r"^cannot measure the peaks of NVIDIA H100 80GB HBM3: out of memory"):
        devices.measured_cuda_profile(torch.device("cuda", 0), seconds=0.01)


def test_ceilings_table_shows_measured_peaks_beside_the_datasheet() -> None:
    from harness.reports.efficiency import ceilings_table
    from harness.results.schema import RunResult

    l40s = PROFILES["l40s"]
    record: dict[str, Any] = {
        "model": {"model": "m"}, "cost": {"parameters": 1e6, "flops_per_token_at_mean": 1e9},
        "device": {"profile": {**dataclasses.asdict(l40s), "peak_flops": dict(l40s.peak_flops)},
                   "measured_peaks": {"peak_flops": {"bfloat16": 301.25e12, "float32": 80.5e12},
                                      "bandwidth_bytes_per_s": 790e9, "method": "measured"}}}
    old = {**record, "device": {"profile": record["device"]["profile"]}}  # a record from before the measurement
    runs = [RunResult("1.2", r, {}, {"model": "m"}, {}, {}, "", efficiency=e) for r, e in (("a", record), ("b", old))]
    table = ceilings_table(runs)
    assert table.headers[2:8] == ["peak bf16 TFLOP/s (profile)", "measured bf16 TFLOP/s",
                                  "peak fp32 TFLOP/s (profile)", "measured fp32 TFLOP/s",
                                  "bandwidth GB/s (profile)", "measured GB/s"]
    assert table.rows[0][2:8] == ["362.1", "301.2", "91.6", "80.5", "864", "790"]
    assert table.rows[1][2:8] == ["362.1", "–", "91.6", "–", "864", "–"]


# ---------------------------------------------------------------------------------------------- table


def test_profile_table_rows() -> None:
    rows = profile_table()
    assert [row["key"] for row in rows] == list(PROFILES)
    by_key = {row["key"]: row for row in rows}
    assert by_key["a100-80gb-sxm"] == {
        "key": "a100-80gb-sxm",
        "name": "NVIDIA A100 80GB SXM",
        "memory_gb": 80.0,
        "bandwidth_gb_s": 2039.0,
        "bf16_tflops": 312.0,
        "fp16_tflops": 312.0,
        "fp32_tflops": 19.5,
        "source": PROFILES["a100-80gb-sxm"].source,
    }
    assert by_key["t4"]["bf16_tflops"] is None
    assert by_key["h200-sxm"]["memory_gb"] == 141.0


def test_bench_list_devices_lists_the_added_cards() -> None:
    result = CliRunner().invoke(main, ["list", "devices"])
    assert result.exit_code == 0, result.output
    for key, name in (("h100-nvl", "NVIDIA H100 NVL 94GB"), ("h200-nvl", "NVIDIA H200 NVL 141GB"),
                      ("gh200-96gb", "NVIDIA GH200 96GB HBM3"), ("l40s", "NVIDIA L40S"),
                      ("rtx-a6000", "NVIDIA RTX A6000"), ("v100-32gb-sxm2", "NVIDIA V100 SXM2 32GB"),
                      ("v100-16gb-sxm2", "NVIDIA V100 SXM2 16GB"), ("v100-32gb-pcie", "NVIDIA V100 PCIe 32GB"),
                      ("v100-16gb-pcie", "NVIDIA V100 PCIe 16GB"), ("b200", "NVIDIA B200 180GB")):
        assert f"| {key} " in result.output and name in result.output
        assert f"{key}: {PROFILES[key].source}" in result.output
    flat = " ".join(result.output.split())
    assert "| 362.1 | 362.1 | 91.6 |" in flat  # L40S bf16 / fp16 / fp32 dense TFLOP/s
    assert "| – | 125 | 15.7 |" in flat  # V100 SXM2: no bf16

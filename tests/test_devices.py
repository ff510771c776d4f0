"""Device ceilings: datasheet GPU profiles, name/alias lookup, CUDA-name detection, the measured CPU profile."""

from __future__ import annotations

import dataclasses

import pytest

from harness.efficiency import devices
from harness.efficiency.devices import (
    ALIASES,
    PROFILES,
    DeviceProfile,
    detect_cuda_profile,
    get_profile,
    local_cpu_profile,
    profile_table,
)
from harness.errors import UsageError

GiB = 2**30
REQUIRED = (
    "a100-40gb-sxm", "a100-80gb-sxm", "a100-40gb-pcie", "a100-80gb-pcie",
    "h100-sxm", "h100-pcie", "h200-sxm", "l4", "t4", "a10g", "rtx4090",
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
    ],
)
def test_get_profile_keys_and_aliases(name: str, key: str) -> None:
    assert get_profile(name) is PROFILES[key]


def test_every_alias_points_at_a_profile() -> None:
    assert set(ALIASES.values()) <= set(PROFILES)
    assert all(alias == alias.lower() for alias in ALIASES)


def test_unknown_profile_is_a_one_line_usage_error() -> None:
    with pytest.raises(UsageError) as info:
        get_profile("b200")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("--gpu 'b200' is not a known device profile; choose one of:")
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
        "NVIDIA B200", "NVIDIA L40S", "NVIDIA A10", "NVIDIA RTX A6000", "NVIDIA H100 NVL", "NVIDIA GH200 480GB",
        "NVIDIA GeForce RTX 4090 Laptop GPU", "NVIDIA GeForce RTX 4090 D", "", "AMD Instinct MI300X",
    ],
)
def test_detect_unknown_or_different_part_is_none(device_name: str) -> None:
    assert detect_cuda_profile(device_name, 80 * GiB) is None


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

"""Device / dtype resolution: CPU bf16 only with native support, clear one-line errors."""

from __future__ import annotations

import contextlib
import json

import pytest
import torch

from harness import device as dev
from harness.errors import ModelError, UsageError

AVX512_BF16 = frozenset({"fpu", "sse2", "avx2", "avx512f", "avx512_bf16"})
AMX = frozenset({"avx2", "amx_tile", "amx_bf16"})
AVX2_ONLY = frozenset({"fpu", "sse2", "avx", "avx2", "fma"})
ARM_BF16 = frozenset({"fp", "asimd", "bf16", "i8mm"})


@pytest.fixture(autouse=True)
def _fresh_cpu_cache():
    dev.cpu_flags.cache_clear()
    dev.cpu_model_name.cache_clear()
    yield
    dev.cpu_flags.cache_clear()
    dev.cpu_model_name.cache_clear()


def _flags(monkeypatch: pytest.MonkeyPatch, flags: frozenset[str]) -> None:
    monkeypatch.setattr(dev, "cpu_flags", lambda: flags)


def _no_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.mark.parametrize(("flags", "fast"), [
    (AVX512_BF16, True), (AMX, True), (ARM_BF16, True), (AVX2_ONLY, False), (frozenset(), False),
])
def test_cpu_has_fast_bf16(flags: frozenset[str], fast: bool) -> None:
    assert dev.cpu_has_fast_bf16(flags) is fast


def test_cpu_flags_parses_cpuinfo(monkeypatch: pytest.MonkeyPatch) -> None:
    text = ("processor\t: 0\nmodel name\t: Test CPU 9000\nflags\t\t: fpu avx2 avx512_bf16\n\n"
            "processor\t: 1\nmodel name\t: Test CPU 9000\nflags\t\t: fpu avx2 avx512_bf16\n")
    monkeypatch.setattr(dev, "_read_cpuinfo", lambda: text)
    assert dev.cpu_flags() == frozenset({"fpu", "avx2", "avx512_bf16"})
    assert dev.cpu_model_name() == "Test CPU 9000"
    assert dev.cpu_has_fast_bf16() is True


def test_cpu_flags_aarch64_features(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dev, "_read_cpuinfo", lambda: "processor\t: 0\nFeatures\t: fp asimd bf16\n")
    assert dev.cpu_flags() == frozenset({"fp", "asimd", "bf16"})


def test_cpu_flags_unreadable_is_empty(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setattr(dev, "_CPUINFO", str(tmp_path / "no-such-cpuinfo"))
    assert dev.cpu_flags() == frozenset()
    assert dev.cpu_has_fast_bf16() is False


def test_auto_dtype_on_cpu_follows_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    _flags(monkeypatch, AVX512_BF16)
    assert dev.resolve_dtype("auto", torch.device("cpu")) == torch.bfloat16
    _flags(monkeypatch, AMX)
    assert dev.resolve_dtype("auto", "cpu") == torch.bfloat16
    _flags(monkeypatch, AVX2_ONLY)
    assert dev.resolve_dtype("auto", "cpu") == torch.float32


@pytest.mark.parametrize(("value", "expected"), [
    ("fp32", torch.float32), ("float32", torch.float32), ("FP32", torch.float32),
    ("bf16", torch.bfloat16), ("bfloat16", torch.bfloat16),
])
def test_explicit_dtype_on_cpu(monkeypatch: pytest.MonkeyPatch, value: str, expected: torch.dtype) -> None:
    _flags(monkeypatch, AVX2_ONLY)  # explicit choices are honoured whatever the CPU
    assert dev.resolve_dtype(value, "cpu") == expected


def test_fp16_on_cpu_is_refused() -> None:
    for value in ("fp16", "float16"):
        with pytest.raises(UsageError, match="--dtype fp16"):
            dev.resolve_dtype(value, "cpu")


@pytest.mark.parametrize("value", ["half", "int8", "", "fp64"])
def test_bad_dtype(value: str) -> None:
    with pytest.raises(UsageError) as err:
        dev.resolve_dtype(value, "cpu")
    assert "--dtype" in str(err.value) and "\n" not in str(err.value)


def test_auto_dtype_on_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    _gpus(monkeypatch, [True])
    assert dev.resolve_dtype("auto", "cuda") == torch.bfloat16
    _gpus(monkeypatch, [False])
    assert dev.resolve_dtype("auto", "cuda:0") == torch.float16
    assert dev.resolve_dtype("fp16", "cuda") == torch.float16


def test_auto_dtype_asks_the_named_gpu_not_the_current_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine mixing an A100 (cuda:0, current) and a V100 (cuda:1): torch answers for its current device, so
    cuda:1 must be asked as cuda:1."""
    _gpus(monkeypatch, [True, False])
    assert dev.resolve_dtype("auto", "cuda:0") == torch.bfloat16
    assert dev.resolve_dtype("auto", "cuda:1") == torch.float16
    assert dev.precision_note(torch.bfloat16, torch.device("cuda:1")) is not None
    assert dev.precision_note(torch.bfloat16, torch.device("cuda:0")) is None


def test_resolve_device_without_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    _no_cuda(monkeypatch)
    assert dev.resolve_device("auto") == torch.device("cpu")
    assert dev.resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ModelError) as err:
        dev.resolve_device("cuda")
    assert str(err.value) == "--device cuda requested but torch sees no CUDA device"
    with pytest.raises(ModelError, match="--device cuda:1 requested"):
        dev.resolve_device("cuda:1")


@pytest.mark.parametrize("value", ["gpu", "cuda:x", "tpu", ""])
def test_bad_device(value: str) -> None:
    with pytest.raises(UsageError) as err:
        dev.resolve_device(value)
    assert "--device" in str(err.value) and "\n" not in str(err.value)


def test_names_and_description() -> None:
    assert dev.dtype_name(torch.float32) == "float32"
    assert dev.dtype_name(torch.bfloat16) == "bfloat16"
    assert dev.dtype_name(torch.float16) == "float16"
    text = dev.describe_device(torch.device("cpu"))
    assert text.startswith("cpu (") and text.endswith(f"{torch.get_num_threads()} threads)")


def test_environment_is_json_and_complete() -> None:
    env = dev.environment()
    json.dumps(env)
    for key in ("python", "platform", "packages", "cpu", "cpu_fast_bf16", "torch_threads", "cuda_available",
                "cuda_device", "cuda_version", "cuda_driver"):
        assert key in env
    packages = env["packages"]
    assert isinstance(packages, dict)
    assert set(packages) >= {"torch", "transformers", "tokenizers", "peft", "accelerate", "datasets", "numpy",
                             "statement-bench"}
    assert packages["torch"] == torch.__version__.split("+")[0] or packages["torch"] == torch.__version__
    assert env["torch_threads"] == torch.get_num_threads()


def _gpus(monkeypatch: pytest.MonkeyPatch, native_bf16: list[bool]) -> None:
    """Fake GPUs: ``torch.cuda.device(i)`` makes GPU i current, and ``is_bf16_supported`` answers for the current
    one as torch does (native from compute capability 8; anything emulates it when including_emulation)."""
    current = [0]

    @contextlib.contextmanager
    def device(index: int):  # type: ignore[no-untyped-def]
        before, current[0] = current[0], index
        try:
            yield
        finally:
            current[0] = before

    monkeypatch.setattr(torch.cuda, "device", device)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported",
                        lambda including_emulation=True: native_bf16[current[0]] or including_emulation)


def _t4(monkeypatch: pytest.MonkeyPatch) -> None:
    """A pre-Ampere GPU (T4/V100): bf16 only through emulation, as torch.cuda.is_bf16_supported reports it."""
    _gpus(monkeypatch, [False])


def test_auto_dtype_on_cuda_needs_native_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    _t4(monkeypatch)
    assert dev.resolve_dtype("auto", "cuda") == torch.float16  # emulated bf16 is not "supported"
    assert dev.precision_note(torch.float16, torch.device("cuda")) is None


def test_explicit_bf16_on_emulated_gpu_is_kept_with_a_note(monkeypatch: pytest.MonkeyPatch) -> None:
    _t4(monkeypatch)
    assert dev.resolve_dtype("bf16", "cuda") == torch.bfloat16
    note = dev.precision_note(torch.bfloat16, torch.device("cuda:0"))
    assert note is not None and "emulat" in note and "\n" not in note
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert dev.precision_note(torch.bfloat16, torch.device("cuda")) is None  # Ampere+: native
    assert dev.precision_note(torch.bfloat16, torch.device("cpu")) is None  # CPU notes come from the backends


@pytest.mark.parametrize(("err", "oom"), [
    (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), True),
    (RuntimeError("CUDA out of memory. Tried to allocate 20.00 MiB"), True),  # torch < 1.13 raised RuntimeError
    (torch.AcceleratorError("CUDA error: out of memory"), True),  # cudaErrorMemoryAllocation via C10_CUDA_CHECK
    (RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"), True),
    (RuntimeError("HIP out of memory. Tried to allocate 1.00 GiB"), True),
    (RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 8 bytes"), True),
    (RuntimeError("mat1 and mat2 shapes cannot be multiplied"), False),
    (ValueError("out of memory"), False),
    (MemoryError(), False),
])
def test_is_out_of_memory(err: BaseException, oom: bool) -> None:
    assert dev.is_out_of_memory(err) is oom

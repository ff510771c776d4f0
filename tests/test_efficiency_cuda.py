"""`bench efficiency` on CUDA without a GPU: a fake CUDA memory API (caching allocator, events, devices) patched
over the `torch.cuda` functions the efficiency modules call, plus the attention implementation per architecture
(a tiny random Gemma 2 built on CPU)."""

from __future__ import annotations

import gc
import json
import math
import sys
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from harness.efficiency.batch_search import OutOfMemory, is_out_of_memory, search_max_batch
from harness.efficiency.memory import MemoryTracker
from harness.efficiency.spec import MeasureSpec
from harness.efficiency.timing import timed

# -- the fake CUDA API -----------------------------------------------------------------------------------------------


@dataclass
class FakeDeviceState:
    total: int
    limit: int
    allocated: int = 0
    reserved: int = 0  # allocated + cached free blocks (returned to the device only by empty_cache)
    peak_allocated: int = 0
    peak_reserved: int = 0


class FakeBlock:
    """A live allocation: back to the allocator's cache (still reserved) once nothing references it."""

    def __init__(self, gpu: FakeCuda, index: int, nbytes: int) -> None:
        self.nbytes = nbytes
        weakref.finalize(self, gpu._free, index, nbytes)


@dataclass
class FakeStream:
    index: int


class FakeEvent:
    def __init__(self, gpu: FakeCuda, enable_timing: bool = False) -> None:
        self.gpu, self.index = gpu, -1

    def record(self, stream: FakeStream | None = None) -> None:
        # torch.cuda.Event.record: "Uses torch.cuda.current_stream() if no stream is specified"
        self.index = stream.index if stream is not None else self.gpu.current
        self.gpu.calls.append(("event.record", self.index))

    def synchronize(self) -> None:
        self.gpu.calls.append(("event.synchronize", self.index))

    def elapsed_time(self, end: FakeEvent) -> float:
        assert self.index == end.index, "start and end events recorded on different devices"
        return 5.0  # milliseconds


@dataclass
class FakeCuda:
    """A caching allocator per device: freed blocks stay reserved until `empty_cache`; an allocation past the
    limit (device memory or `set_per_process_memory_fraction`) first releases the cache, then raises torch's OOM."""

    total: int
    count: int = 2
    current: int = 0
    states: dict[int, FakeDeviceState] = field(default_factory=dict)
    calls: list[tuple[str, int | None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.states = {i: FakeDeviceState(self.total, self.total) for i in range(self.count)}

    def _index(self, device: Any = None) -> int:
        if device is None:
            return self.current
        if isinstance(device, int):
            return device
        dev = torch.device(device)
        assert dev.type == "cuda", f"a CUDA query for {dev}"
        return self.current if dev.index is None else int(dev.index)

    def _free(self, index: int, nbytes: int) -> None:
        self.states[index].allocated -= nbytes

    def alloc(self, nbytes: int, device: Any) -> FakeBlock:
        index = self._index(device)
        s = self.states[index]
        cached = s.reserved - s.allocated
        if nbytes > cached and s.reserved + nbytes - cached > s.limit:
            s.reserved = s.allocated  # the caching allocator frees unused cached blocks before giving up
            if s.allocated + nbytes > s.limit:
                raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate {nbytes} bytes. GPU {index}")
        s.reserved = max(s.reserved, s.allocated + nbytes)
        s.allocated += nbytes
        s.peak_allocated = max(s.peak_allocated, s.allocated)
        s.peak_reserved = max(s.peak_reserved, s.reserved)
        return FakeBlock(self, index, nbytes)

    # torch.cuda functions
    def set_device(self, device: Any) -> None:
        self.current = self._index(device)
        self.calls.append(("set_device", self.current))

    def synchronize(self, device: Any = None) -> None:
        self.calls.append(("synchronize", self._index(device)))

    def empty_cache(self) -> None:  # torch.cuda.empty_cache: "Release all unoccupied cached memory"
        for s in self.states.values():
            s.reserved = s.allocated
        self.calls.append(("empty_cache", None))

    def reset_peak_memory_stats(self, device: Any = None) -> None:
        s = self.states[self._index(device)]
        s.peak_allocated, s.peak_reserved = s.allocated, s.reserved
        self.calls.append(("reset_peak_memory_stats", self._index(device)))

    def memory_allocated(self, device: Any = None) -> int:
        self.calls.append(("memory_allocated", self._index(device)))
        return self.states[self._index(device)].allocated

    def max_memory_allocated(self, device: Any = None) -> int:
        self.calls.append(("max_memory_allocated", self._index(device)))
        return self.states[self._index(device)].peak_allocated

    def max_memory_reserved(self, device: Any = None) -> int:
        self.calls.append(("max_memory_reserved", self._index(device)))
        return self.states[self._index(device)].peak_reserved

    def set_per_process_memory_fraction(self, fraction: float, device: Any = None) -> None:
        s = self.states[self._index(device)]
        s.limit = int(fraction * s.total)

    def mem_get_info(self, device: Any = None) -> tuple[int, int]:
        s = self.states[self._index(device)]
        return s.total - s.reserved, s.total

    def get_device_properties(self, device: Any = None) -> Any:
        return SimpleNamespace(total_memory=self.total, name="Fake GPU")

    def current_stream(self, device: Any = None) -> FakeStream:
        return FakeStream(self._index(device))

    def event(self, enable_timing: bool = False) -> FakeEvent:
        return FakeEvent(self, enable_timing)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> FakeCuda:
        for name in ("set_device", "synchronize", "empty_cache", "reset_peak_memory_stats", "memory_allocated",
                     "max_memory_allocated", "max_memory_reserved", "set_per_process_memory_fraction",
                     "mem_get_info", "get_device_properties", "current_stream"):
            monkeypatch.setattr(torch.cuda, name, getattr(self, name))
        monkeypatch.setattr(torch.cuda, "Event", self.event)
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: self.count)
        monkeypatch.setattr(torch.cuda, "current_device", lambda: self.current)
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Fake GPU")
        return self


@pytest.fixture
def gpu(monkeypatch: pytest.MonkeyPatch) -> FakeCuda:
    return FakeCuda(total=10_000_000).install(monkeypatch)


class FakeTimedModel:
    """Weights resident on the device; a forward of n rows holds 0.9 * per_row * n bytes (say logits) and then
    0.1 * per_row * n more at once, so an out-of-memory error is raised while the first block is still referenced
    by the forward's frame (and so by the traceback)."""

    def __init__(self, gpu: FakeCuda, device: torch.device, weights: int, per_row: int) -> None:
        self.gpu, self.device, self.per_row = gpu, device, per_row
        self.kind = "encoder"
        self.weights = gpu.alloc(weights, device)

    def inputs(self, rows: list[tuple[int, ...]], pad_to: int | None = None) -> dict[str, torch.Tensor]:
        return {"input_ids": torch.zeros((len(rows), pad_to or max(len(r) for r in rows)), dtype=torch.long)}

    def forward(self, inputs: dict[str, torch.Tensor]) -> None:
        n = int(inputs["input_ids"].shape[0])
        logits = self.gpu.alloc(self.per_row * n * 9 // 10, self.device)
        scores = self.gpu.alloc(self.per_row * n // 10, self.device)
        del logits, scores


# -- 5: peaks after an out-of-memory probe ---------------------------------------------------------------------------

def test_cleanup_runs_after_the_failed_batch_is_released() -> None:
    """The failed batch's objects live in the traceback's frames: `cleanup` must run once they are unreachable,
    i.e. after the except block (empty_cache frees only unoccupied blocks)."""
    alive_at_cleanup: list[bool] = []
    refs: list[weakref.ref[Any]] = []

    class Activation:
        pass

    def try_batch(n: int) -> None:
        activation = Activation()
        refs.append(weakref.ref(activation))
        if n > 3:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    def cleanup() -> None:
        alive_at_cleanup.append(refs[-1]() is not None or sys.exc_info()[0] is not None)

    result = search_max_batch(try_batch, cap=64, cleanup=cleanup)
    assert result.max_batch == 3
    assert alive_at_cleanup == [False]  # one failed probe (4), cleaned up once it was unreachable


@pytest.mark.parametrize("guess", ["linear", "low"])
def test_probe_peaks_after_an_oom_are_the_probes_own(gpu: FakeCuda, guess: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Every fitting probe's peak is weights + its own activations (allocated), not the reserved bytes a failed
    probe left in the cache; memory is emptied once the failed probe's blocks are unreachable. ``low`` probes just
    above the floor after each failure (as a wrong guess or a bisection does), below the failed probe's blocks."""
    import harness.efficiency.measure as measure_module

    if guess == "low":
        monkeypatch.setattr(measure_module, "linear_guess", lambda limit: lambda lo, hi, probes: lo + 1)
    emptied: list[tuple[int, int]] = []
    empty_cache = gpu.empty_cache

    def spy() -> None:
        empty_cache()
        emptied.append((gpu.states[1].allocated, gpu.states[1].reserved))

    monkeypatch.setattr(torch.cuda, "empty_cache", spy)
    device = torch.device("cuda", 1)
    weights, per_row, limit = 500_000, 1_000, 1_450_000  # fits while weights + per_row * n <= limit: n <= 950
    tm = FakeTimedModel(gpu, device, weights, per_row)
    tracker = MemoryTracker(device, limit)
    spec = MeasureSpec(model="fake", warmup=0, probe_forwards=3, max_batch=4096)
    workload = SimpleNamespace(longest=(1, 2, 3))
    found, details = measure_module.search(tm, workload, spec, tracker, lambda _m: None)  # type: ignore[arg-type]
    assert (found.max_batch, found.max_pow2, found.stop_reason) == (950, 512, "oom")
    failed = [p.batch_size for p in found.probes if not p.fits]
    assert failed and all(n > 950 for n in failed)
    if guess == "low":
        after = found.probes[[p.fits for p in found.probes].index(False):]
        assert any(p.fits and p.batch_size < 0.9 * failed[0] for p in after)
    for p in found.probes:
        if p.fits:
            assert p.peak_bytes == weights + per_row * p.batch_size, p
    assert all(d["torch_allocated"] == weights + per_row * d["batch_size"] for d in details)
    # every time the cache was emptied, only the weights were alive: the failed probes' blocks were gone
    assert emptied and all(state == (weights, weights) for state in emptied)
    assert gpu.states[0].peak_allocated == 0  # nothing touched device 0


def test_an_out_of_memory_error_without_a_message_is_a_failed_probe() -> None:
    """MemoryError() (Python's allocator) has no message: the probe fails, the search goes on."""
    from harness.efficiency.measure import search

    class Model:
        device, kind = torch.device("cpu"), "encoder"

        def inputs(self, rows: list[tuple[int, ...]], pad_to: int | None = None) -> dict[str, torch.Tensor]:
            return {"input_ids": torch.zeros((len(rows), 3), dtype=torch.long)}

        def forward(self, inputs: dict[str, torch.Tensor]) -> None:
            if inputs["input_ids"].shape[0] > 5:
                raise MemoryError()

    spec = MeasureSpec(model="fake", warmup=0, probe_forwards=3, max_batch=64)
    lines: list[str] = []
    found, _ = search(Model(), SimpleNamespace(longest=(1, 2, 3)), spec,  # type: ignore[arg-type]
                      MemoryTracker(torch.device("cpu"), None), lines.append)
    assert found.max_batch == 5
    assert "  probe 8: out of memory (MemoryError)" in lines


def test_is_out_of_memory_knows_torchs_real_messages() -> None:
    try:  # the real CPU allocator's message (c10/core/impl/alloc_cpu.cpp) does not say "out of memory"
        torch.empty(1 << 50, dtype=torch.uint8)
    except RuntimeError as err:
        real_cpu: BaseException = err
    assert is_out_of_memory(real_cpu)
    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB"))
    assert is_out_of_memory(RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"))
    assert is_out_of_memory(RuntimeError("cuDNN error: CUDNN_STATUS_ALLOC_FAILED"))
    assert is_out_of_memory(RuntimeError("CUDA error: out of memory\nCUDA kernel errors might be asynchronously"))
    assert is_out_of_memory(RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: not enough "
                                         "memory: you tried to allocate 1024 bytes."))
    assert is_out_of_memory(RuntimeError("MPS backend out of memory (MPS allocated: 1.00 GB)"))
    assert is_out_of_memory(OutOfMemory("over --memory-limit 2 GB")) and is_out_of_memory(MemoryError())
    assert not is_out_of_memory(RuntimeError("CUDA error: device-side assert triggered"))
    assert not is_out_of_memory(ValueError("not enough memory"))  # only the runtime's own error types
    assert not is_out_of_memory(KeyboardInterrupt())


# -- 6: timing and memory on the measured device ---------------------------------------------------------------------

def test_timing_and_memory_queries_use_the_measured_device(gpu: FakeCuda) -> None:
    """With device 0 current, `--device cuda:1` must record its events on device 1's stream and synchronise and
    query device 1 (an event recorded on device 0's stream times an idle device)."""
    device = torch.device("cuda", 1)
    assert gpu.current == 0
    out, seconds = timed(lambda: "done", device)
    assert (out, seconds) == ("done", 0.005)
    records = [index for name, index in gpu.calls if name == "event.record"]
    assert records == [1, 1]
    assert [index for name, index in gpu.calls if name == "synchronize"] == [1]
    gpu.calls.clear()
    tracker = MemoryTracker(device, None)
    tracker.reset()
    tracker.peak()
    queried = {index for name, index in gpu.calls if name.startswith(("max_memory", "reset_peak", "synchronize"))}
    assert queried == {1}


def test_child_makes_the_measured_device_current(gpu: FakeCuda, monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    """Kernels, cuBLAS handles and current-stream events follow the current device: the child sets it first."""
    import harness.efficiency.measure as measure_module
    from harness.efficiency.child import main as child_main

    seen: list[int] = []

    def fake_measure(spec: MeasureSpec, log: Any = None) -> dict[str, Any]:
        seen.append(gpu.current)
        return {"model": {"model": spec.model}}

    monkeypatch.setattr(measure_module, "measure", fake_measure)
    spec_path, out = tmp_path / "spec.json", tmp_path / "out.json"
    spec_path.write_text(json.dumps({"model": "fake", "device": "cuda:1"}), encoding="utf-8")
    assert child_main([str(spec_path), str(out)]) == 0
    assert seen == [1] and ("set_device", 1) in gpu.calls
    gpu.calls.clear()
    spec_path.write_text(json.dumps({"model": "fake", "device": "cpu"}), encoding="utf-8")
    assert child_main([str(spec_path), str(out)]) == 0
    assert not [c for c in gpu.calls if c[0] == "set_device"]


def test_planning_compares_the_profile_of_the_named_device(gpu: FakeCuda, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--gpu PROFILE --device cuda:1` is checked against device 1, not device 0."""
    import harness.efficiency.profiles as devices
    from harness.efficiency.runner import local_device_profile_key

    asked: list[Any] = []

    def profile_of(device: Any) -> tuple[None, str]:
        asked.append(device)
        return None, f"Fake GPU {device}"

    monkeypatch.setattr(devices, "profile_of_cuda_device", profile_of)
    assert local_device_profile_key("cuda:1") == "unknown-gpu:Fake GPU 1"
    assert local_device_profile_key("auto") == "unknown-gpu:Fake GPU 0"
    assert local_device_profile_key("cpu") == "local-cpu"
    assert asked == [1, 0]


# -- 8: the attention implementation `bench run` uses ----------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_gemma2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Gemma 2 (attention soft-capping on) saved with a bundled tokenizer (its vocabulary size)."""
    from transformers import AutoTokenizer, Gemma2Config, Gemma2ForCausalLM

    from harness.models.materialise import resolve_model

    tokenizer = AutoTokenizer.from_pretrained(resolve_model("smollm2-135m").path)
    config = Gemma2Config(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                          num_attention_heads=2, num_key_value_heads=1, head_dim=8, max_position_embeddings=128,
                          attn_logit_softcapping=50.0, final_logit_softcapping=30.0,
                          pad_token_id=tokenizer.pad_token_id, architectures=["Gemma2ForCausalLM"])
    assert config.attn_logit_softcapping == 50.0
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny-gemma2")
    Gemma2ForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def _eager_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """transformers 4.45 (PR #32865, "Gemma2: eager attention by default"): eager unless sdpa is asked for, which
    is still accepted and drops the soft-capping. The installed release refuses sdpa for Gemma 2 outright
    (`Gemma2PreTrainedModel._supports_sdpa = False  # sdpa does not support softcapping`)."""
    from transformers.models.gemma2.modeling_gemma2 import Gemma2PreTrainedModel

    original = Gemma2PreTrainedModel.get_correct_attn_implementation

    def eager_unless_asked(self: Any, requested: str | None, is_init_check: bool = False) -> str:
        return str(original(self, "eager" if requested is None else requested, is_init_check))

    monkeypatch.setattr(Gemma2PreTrainedModel, "_supports_sdpa", True)
    monkeypatch.setattr(Gemma2PreTrainedModel, "get_correct_attn_implementation", eager_unless_asked)


@pytest.mark.parametrize("transformers_rule", ["installed", "eager-by-default"])
def test_gemma2_gets_the_attention_bench_run_uses(tiny_gemma2: Path, transformers_rule: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.efficiency.loading import attention_impl, load_random, load_real

    if transformers_rule == "eager-by-default":
        _eager_by_default(monkeypatch)
    base = MeasureSpec(model=str(tiny_gemma2), device="cpu", dtype="fp32")
    run_loader = load_real(MeasureSpec(**{**base.__dict__, "weights": "real"}))  # `bench run`'s hf backend
    random = load_random(MeasureSpec(**{**base.__dict__, "weights": "random"}))
    expected = attention_impl(run_loader.model)
    assert expected == "eager"  # soft-capping needs eager (or flash / flex) attention
    assert attention_impl(random.model) == expected
    assert random.info["attention_implementation"] == run_loader.info["attention_implementation"] == expected


def test_the_record_carries_the_attention_implementation(tiny_gemma2: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.efficiency.measure import measure

    _eager_by_default(monkeypatch)
    spec = MeasureSpec(model=str(tiny_gemma2), weights="random", device="cpu", dtype="fp32", tasks=("xcopa",),
                       languages=("it",), limit=2, max_batch=2, batch_sizes=(1,), warmup=0, min_iters=1,
                       min_seconds=0.0, cpu_profile_seconds=0.05)
    record = measure(spec)
    assert record["model"]["attention_implementation"] == "eager"
    assert record["environment"]["attention_implementation"] == "eager"
    assert record["max_batch"]["max_batch"] == 2


def test_throughput_oom_releases_memory_after_the_except_block(tiny_gemma2: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A throughput point that runs out of memory is recorded, and memory is released once the failed run's
    objects are unreachable (not inside the except block, where the traceback still holds them)."""
    import harness.efficiency.measure as measure_module

    refs: list[weakref.ref[Any]] = []
    released_with_live_batch: list[bool] = []
    real_throughput = measure_module.throughput

    class Activations:
        pass

    def throughput(tm: Any, workload: Any, cost: Any, spec: Any, tracker: Any, batch_size: int, *args: Any) -> Any:
        if batch_size == 2:
            held = Activations()
            refs.append(weakref.ref(held))
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 8.00 GiB")
        return real_throughput(tm, workload, cost, spec, tracker, batch_size, *args)

    def release(device: torch.device) -> None:
        if refs:
            released_with_live_batch.append(refs[-1]() is not None or sys.exc_info()[0] is not None)
        gc.collect()

    monkeypatch.setattr(measure_module, "throughput", throughput)
    monkeypatch.setattr(measure_module, "release_memory", release)
    spec = MeasureSpec(model=str(tiny_gemma2), weights="random", device="cpu", dtype="fp32", tasks=("xcopa",),
                       languages=("it",), limit=2, max_batch=2, batch_sizes=(1, 2), warmup=0, min_iters=1,
                       min_seconds=0.0, cpu_profile_seconds=0.05)
    record = measure_module.measure(spec)
    points = {p["batch_size"]: p for p in record["throughput"]}
    assert points[2]["error"].startswith("out of memory: CUDA out of memory")
    assert math.isfinite(points[1]["examples_per_s"])
    assert released_with_live_batch == [False]

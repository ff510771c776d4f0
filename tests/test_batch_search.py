"""Max-batch search against a fake allocator that fails above a known size: exact answers required."""

from __future__ import annotations

import math

import pytest
import torch

from harness.efficiency.batch_search import OutOfMemory, is_out_of_memory, search_max_batch


class FakeAllocator:
    """A batch of n needs n units; more than ``capacity`` units is out of memory. Counts frees."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.frees = 0
        self.calls: list[int] = []

    def __call__(self, n: int) -> None:
        self.calls.append(n)
        if n > self.capacity:
            raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate {n} units\nmore detail")

    def free(self) -> None:
        self.frees += 1


# the seed paper's (largest power of two, exact) pairs, and edge cases
@pytest.mark.parametrize(("capacity", "pow2"), [
    (732, 512), (240, 128), (36, 32), (18, 16), (512, 512), (1, 1), (2, 2), (3, 2), (1023, 512), (1025, 1024),
])
def test_exact_max_batch_and_power_of_two(capacity: int, pow2: int) -> None:
    fake = FakeAllocator(capacity)
    result = search_max_batch(fake, cap=4096, cleanup=fake.free)
    assert (result.max_batch, result.max_pow2, result.stop_reason) == (capacity, pow2, "oom")
    failures = [p for p in result.probes if not p.fits]
    assert fake.frees == len(failures) >= 1
    assert failures[0].error == f"CUDA out of memory. Tried to allocate {failures[0].batch_size} units"
    # doubling + binary search: about 2 log2(capacity) probes, never a linear scan
    assert len(result.probes) <= 2 * math.ceil(math.log2(capacity + 1)) + 2
    assert [p.batch_size for p in result.probes] == fake.calls


def test_probe_sequence_is_doubling_then_bisection() -> None:
    fake = FakeAllocator(36)
    result = search_max_batch(fake, cap=1000)
    assert fake.calls == [1, 2, 4, 8, 16, 32, 64, 48, 40, 36, 38, 37]
    assert [p.fits for p in result.probes] == [True] * 6 + [False, False, False, True, False, False]


@pytest.mark.parametrize(("capacity", "cap", "expected", "pow2"), [
    (10_000, 1000, 1000, 512),  # nothing failed: the cap itself is tried and fits
    (10_000, 1024, 1024, 1024),  # the cap is a power of two that fits: no extra probe
    (700, 1000, 700, 512),  # the cap fails: bisect between 512 and the cap
])
def test_cap(capacity: int, cap: int, expected: int, pow2: int) -> None:
    result = search_max_batch(FakeAllocator(capacity), cap=cap)
    assert (result.max_batch, result.max_pow2) == (expected, pow2)
    assert result.stop_reason == ("cap" if expected == cap else "oom")
    assert max(p.batch_size for p in result.probes) <= cap


def test_nothing_fits() -> None:
    result = search_max_batch(FakeAllocator(0), cap=64)
    assert (result.max_batch, result.max_pow2, result.stop_reason) == (0, 0, "oom")
    assert [p.batch_size for p in result.probes] == [1]


def test_other_errors_propagate_and_bad_cap() -> None:
    def broken(n: int) -> None:
        if n > 4:
            raise ValueError("shape mismatch")

    with pytest.raises(ValueError, match="shape mismatch"):
        search_max_batch(broken, cap=64)
    with pytest.raises(ValueError, match="cap must be at least 1"):
        search_max_batch(FakeAllocator(8), cap=0)


def test_is_out_of_memory() -> None:
    assert is_out_of_memory(torch.OutOfMemoryError("x"))
    assert is_out_of_memory(RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried ... out of memory"))
    assert is_out_of_memory(OutOfMemory("over --memory-limit 2 GB")) and is_out_of_memory(MemoryError())
    assert not is_out_of_memory(RuntimeError("expected scalar type Float"))
    assert not is_out_of_memory(KeyboardInterrupt())

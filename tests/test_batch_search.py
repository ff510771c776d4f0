"""Max-batch search against a fake allocator that fails above a known size: exact answers required."""

from __future__ import annotations

import math

import pytest
import torch

from harness.efficiency.batch_search import OutOfMemory, is_out_of_memory, linear_guess, search_max_batch


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


class LinearAllocator(FakeAllocator):
    """Peak bytes = base + per_row * n (as on CPU once weights are loaded); over ``limit`` is out of memory."""

    def __init__(self, base: float, per_row: float, limit: float) -> None:
        super().__init__(capacity=math.floor((limit - base) / per_row))
        self.base, self.per_row = base, per_row

    def __call__(self, n: int) -> float:  # type: ignore[override]
        super().__call__(n)
        return self.base + self.per_row * n


@pytest.mark.parametrize(("base", "per_row", "limit"), [
    (700e6, 1.01e6, 2e9), (1.5e9, 37.3e6, 2e9), (300e6, 3e3, 2e9), (10.0, 1.0, 742.0), (0.0, 7.0, 7 * 1500.0),
])
def test_linear_guess_finds_the_exact_boundary_in_few_probes(base: float, per_row: float, limit: float) -> None:
    fake = LinearAllocator(base, per_row, limit)
    plain = search_max_batch(LinearAllocator(base, per_row, limit), cap=1 << 20)
    guessed = search_max_batch(fake, cap=1 << 20, cleanup=fake.free, next_probe=linear_guess(limit))
    assert guessed.max_batch == plain.max_batch == fake.capacity
    assert guessed.max_pow2 == plain.max_pow2
    doubling = sum(1 for n in fake.calls if n & (n - 1) == 0 and n <= 2 * plain.max_pow2)
    assert len(fake.calls) - doubling <= 2  # the guess, then its neighbour above
    assert [p.peak_bytes for p in guessed.probes if p.fits][:2] == [base + per_row, base + 2 * per_row]


def test_bad_guesses_still_give_the_exact_answer() -> None:
    """A guess that is always wrong (one above the floor) falls back to bisection and stays exact."""
    fake = FakeAllocator(732)
    result = search_max_batch(fake, cap=4096, next_probe=lambda lo, hi, probes: lo + 1)
    assert (result.max_batch, result.max_pow2) == (732, 512)
    assert len(result.probes) <= 11 + 3 * 8

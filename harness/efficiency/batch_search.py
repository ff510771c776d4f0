"""Max-batch search: double until a batch does not fit, then binary-search the largest batch that does.

The seed paper reports both numbers (largest power of two and exact largest, e.g. mDeBERTa 512 / 732), so the
search records both, with every probe and why it stopped (out of memory, or the cap). Running one batch, and
deciding what counts as out of memory, are the caller's job: the search only needs ``try_batch(n)``, which
returns when a batch of ``n`` fits and raises when it does not, so it is tested against a fake allocator.

Between the largest fitting and the first failing batch the search bisects; a caller that measures memory can
instead propose each next probe (``next_probe``, e.g. `linear_guess` from the measured peaks: memory grows
linearly in the batch once weights are loaded), which finds the boundary in two or three probes instead of
log2(gap). Proposals are clamped inside the bracket, and two in a row that do not halve it are followed by a
plain midpoint, so the answer stays exact and the probe count at most three times the bisection's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from harness.errors import one_line

StopReason = Literal["oom", "cap"]


class OutOfMemory(Exception):
    """A batch did not fit: raised by a probe (e.g. past ``--memory-limit`` on CPU) or mapped from torch's OOM."""


def is_out_of_memory(err: BaseException) -> bool:
    """A failed probe: our OutOfMemory (CPU ``--memory-limit``), MemoryError, or any allocation failure torch
    raises (`harness.device.is_out_of_memory`, the one place that knows torch's messages)."""
    if isinstance(err, OutOfMemory | MemoryError):
        return True
    from harness.device import is_out_of_memory as torch_out_of_memory  # imports torch: only once a probe failed

    return torch_out_of_memory(err)


@dataclass(frozen=True)
class BatchProbe:
    batch_size: int
    fits: bool
    error: str | None = None  # the out-of-memory message, first line
    peak_bytes: float | None = None  # what ``try_batch`` returned for a batch that fitted (its measured peak)


@dataclass(frozen=True)
class MaxBatch:
    max_batch: int  # the largest batch that fits (0: not even the first probe)
    max_pow2: int  # the largest power of two that fits (0: none)
    stop_reason: StopReason
    cap: int
    probes: tuple[BatchProbe, ...]


NextProbe = Callable[[int, int, Sequence[BatchProbe]], "int | None"]


def linear_guess(limit_bytes: float) -> NextProbe:
    """Propose the batch where a straight line through the smallest and the largest fitting probe's peaks
    reaches the limit (the longest baseline: allocator noise between neighbouring probes barely tilts it)."""
    def guess(lo: int, hi: int, probes: Sequence[BatchProbe]) -> int | None:
        measured = sorted((p for p in probes if p.fits and p.peak_bytes is not None), key=lambda p: p.batch_size)
        if len(measured) < 2 or measured[0].batch_size == measured[-1].batch_size:
            return None
        a, b = measured[0], measured[-1]
        assert a.peak_bytes is not None and b.peak_bytes is not None
        slope = (b.peak_bytes - a.peak_bytes) / (b.batch_size - a.batch_size)
        if slope <= 0:
            return None
        return math.floor(b.batch_size + (limit_bytes - b.peak_bytes) / slope)
    return guess


def search_max_batch(try_batch: Callable[[int], object], *, cap: int,
                     is_oom: Callable[[BaseException], bool] = is_out_of_memory,
                     cleanup: Callable[[], None] = lambda: None,
                     next_probe: NextProbe | None = None) -> MaxBatch:
    """Largest batch in [1, cap] for which ``try_batch`` returns; errors that are not out of memory propagate.

    Doubling from 1 finds the largest power of two; the exact value is then binary-searched between it and the
    first batch that failed (or ``cap`` when nothing failed: the stop reason is then ``cap``). ``cleanup`` runs
    after every out-of-memory failure, once the error and its traceback are released (free caches before the
    next probe). ``try_batch`` may return the batch's measured peak memory (bytes), kept in the probe for
    ``next_probe``.
    """
    if cap < 1:
        raise ValueError(f"cap must be at least 1 (got {cap})")
    probes: list[BatchProbe] = []

    def fits(n: int) -> bool:
        failure: str | None = None
        try:
            peak = try_batch(n)
        except BaseException as err:
            if not is_oom(err):
                raise
            failure = one_line(err, limit=100_000)
        if failure is not None:
            # only now, past the except block, are the traceback's frames (and the failed batch's tensors) gone:
            # torch.cuda.empty_cache releases only unoccupied cached blocks
            cleanup()
            probes.append(BatchProbe(n, False, failure))
            return False
        probes.append(BatchProbe(n, True, peak_bytes=float(peak) if isinstance(peak, int | float) else None))
        return True

    ok, n = 0, 1
    failed: int | None = None
    while n <= cap:
        if not fits(n):
            failed = n
            break
        ok, n = n, n * 2
    max_pow2 = ok
    if failed is None:  # every power of two up to the cap fitted
        if ok == cap:
            return MaxBatch(cap, max_pow2, "cap", cap, tuple(probes))
        if fits(cap):
            return MaxBatch(cap, max_pow2, "cap", cap, tuple(probes))
        failed = cap
    lo, hi = ok, failed  # lo fits (or is 0), hi does not
    slow_guesses = 0  # consecutive guesses that did not halve the bracket
    while hi - lo > 1:
        mid = (lo + hi) // 2
        proposal = None if next_probe is None or slow_guesses >= 2 else next_probe(lo, hi, probes)
        # a guess is clamped inside the bracket: a good one settles in two probes (it, then its neighbour above)
        n = min(max(proposal, lo + 1), hi - 1) if proposal is not None else mid
        width = hi - lo
        if fits(n):
            lo = n
        else:
            hi = n
        # two guesses in a row that did not halve the bracket: bisect once (bounded probe count)
        slow_guesses = slow_guesses + 1 if proposal is not None and (hi - lo) * 2 > width else 0
    return MaxBatch(lo, max_pow2, "oom", cap, tuple(probes))

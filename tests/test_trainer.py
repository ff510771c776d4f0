"""The statement trainer on the bundled tiny English encoder (minilm-l6): it learns, saves loadable models,
resumes after an interrupt, and refuses a mismatched output directory."""

from __future__ import annotations

import json
import os
import random
import stat
from pathlib import Path

import pytest
import torch

from harness.backends.base import BackendConfig
from harness.backends.encoder import EncoderBackend
from harness.core import StatementRequest
from harness.errors import UsageError
from harness.training.model_setup import LoraSettings
from harness.training.trainer import (
    Statement,
    StatementTrainer,
    TrainConfig,
    batch_order,
    binary_scores,
    latest_checkpoint,
)

pytestmark = pytest.mark.slow

NAMES = ["Anna", "Ben", "Carla", "David", "Eva", "Farid", "Gita", "Hugo", "Ines", "Jon", "Kemal", "Lena", "Mira",
         "Nils", "Omar", "Pia", "Quinn", "Rosa", "Sven", "Tara", "Umar", "Vera", "Wim", "Xena", "Yusuf", "Zoe"]
THINGS = ["apples", "bread", "cheese", "dates", "eggs", "figs", "grapes", "honey"]


def toy_statements(n: int, seed: int) -> list[Statement]:
    """Learnable in a few steps: True statements say 'loves', False ones 'hates'."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        label = i % 2
        verb = "loves" if label else "hates"
        group = f"toy/{'en' if i % 3 else 'de'}"
        out.append(Statement(f"{rng.choice(NAMES)} {verb} {rng.choice(THINGS)}.", label, group))
    return out


TRAIN = toy_statements(96, 1)
HELD = toy_statements(32, 2)


def cfg(**kw: object) -> TrainConfig:
    base = dict(model="minilm-l6", method="full", lr=1e-4, batch_size=8, max_steps=24, eval_every=12, seed=0,
                dtype="fp32", max_length=64, warmup_ratio=0.0)
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


def p_true(model_dir: Path, texts: list[str]) -> list[float]:
    backend = EncoderBackend(BackendConfig(model=str(model_dir), dtype="fp32", batch_size=8))
    try:
        reqs = [StatementRequest(example_id=f"x{i}", candidate=0, text=t) for i, t in enumerate(texts)]
        return [s.value for s in backend.score(reqs)]
    finally:
        backend.close()


def test_binary_scores_and_batch_order() -> None:
    assert binary_scores([1, 1, 0, 0, 1], [1, 0, 0, 1, 1]) == (0.6, pytest.approx(2 * 2 / (2 * 2 + 1 + 1)))
    assert binary_scores([0, 0], [0, 0]) == (1.0, 0.0)
    lengths = [5, 9, 3, 7, 1, 8, 2, 6, 4, 10]
    a = batch_order(lengths, 3, seed=0, epoch=0)
    assert a == batch_order(lengths, 3, seed=0, epoch=0) and a != batch_order(lengths, 3, seed=0, epoch=1)
    assert sorted(i for b in a for i in b) == list(range(10))
    assert all(len(b) <= 3 for b in a)


def test_full_finetuning_learns_saves_and_loads(tmp_path: Path) -> None:
    out = tmp_path / "full"
    outcome = StatementTrainer(cfg(), TRAIN, HELD, out, manifest={"config": {"toy": True}},
                               command="bench train --toy").run()
    assert [h.step for h in outcome.history] == [12, 24]
    assert outcome.best is not None and outcome.best.accuracy == 1.0 and outcome.best.n == 32
    assert set(outcome.best.by_group) == {"toy/en", "toy/de"}
    info = json.loads((out / "training.json").read_text())
    assert info["finished"] and info["steps"] == 24 and info["command"] == "bench train --toy"
    assert info["config"]["learning_rate"] == 1e-4 and not (out / "checkpoint").exists()
    card = (out / "README.md").read_text()
    assert "bench train --toy" in card and "accuracy 100.00" in card
    # the directory is a model `bench run --backend encoder --model DIR` loads, head trained
    scores = p_true(out, ["Nina loves cheese.", "Nina hates cheese."])
    assert scores[0] > 0.5 > scores[1]
    # the same command again does nothing
    again = StatementTrainer(cfg(), TRAIN, HELD, out).run()
    assert again.already_done and again.best == outcome.best
    # another config into the same directory is refused
    with pytest.raises(UsageError, match="different config"):
        StatementTrainer(cfg(lr=2e-4), TRAIN, HELD, out).run()


def test_interrupt_then_resume_matches_uninterrupted_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kw = dict(max_steps=12, eval_every=4)
    reference = StatementTrainer(cfg(**kw), TRAIN, HELD, tmp_path / "ref").run()

    real = StatementTrainer.evaluate
    calls = {"n": 0}

    def interrupting(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 2:  # Ctrl-C during the second evaluation (step 8)
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(StatementTrainer, "evaluate", interrupting)
    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        StatementTrainer(cfg(**kw), TRAIN, HELD, out).run()
    where = latest_checkpoint(out / "checkpoint")
    assert where is not None and where.name == "step-00000008" and not (out / "training.json").exists()
    assert [p.name for p in (out / "checkpoint").glob("step-*")] == ["step-00000008"]  # step 4's was dropped
    saved = json.loads((where / "progress.json").read_text())
    assert saved["step"] == 8 and saved["world_size"] == 1 and [h["step"] for h in saved["history"]] == [4]
    # weights in safetensors; what accelerate still pickles loads with weights_only=True
    assert (where / "model.safetensors").exists() and (where / "rng_0.safetensors").exists()
    assert torch.load(where / "optimizer.bin", weights_only=True)["state"]
    monkeypatch.setattr(StatementTrainer, "evaluate", real)
    resumed = StatementTrainer(cfg(**kw), TRAIN, HELD, out).run()
    assert resumed.resumed_from == 8 and resumed.steps == 12
    # evaluation at step 8 was lost with the interrupt; steps 4 and 12 match the uninterrupted run exactly
    ref = {h.step: (h.loss, h.accuracy) for h in reference.history}
    got = {h.step: (h.loss, h.accuracy) for h in resumed.history}
    assert got[4] == ref[4]
    assert got[12] == pytest.approx(ref[12], abs=1e-4)
    info = json.loads((out / "training.json").read_text())
    assert info["resumed_from"] == 8 and not (out / "checkpoint").exists()


def test_lora_checkpoint_holds_the_adapters_and_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kw: dict[str, object] = dict(method="lora", lr=2e-3, lora=LoraSettings(r=8, alpha=16), max_steps=8,
                                 eval_every=4)
    reference = StatementTrainer(cfg(**kw), TRAIN, HELD, tmp_path / "ref").run()
    real = StatementTrainer.evaluate

    def interrupting(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt  # during the first evaluation (step 4)

    monkeypatch.setattr(StatementTrainer, "evaluate", interrupting)
    out = tmp_path / "lora"
    with pytest.raises(KeyboardInterrupt):
        StatementTrainer(cfg(**kw), TRAIN, HELD, out).run()
    from safetensors import safe_open

    where = latest_checkpoint(out / "checkpoint")
    assert where is not None
    with safe_open(str(where / "model.safetensors"), "pt") as f:
        keys = list(f.keys())
    # the trained weights only (adapters, head, pooler), not the frozen base
    assert keys and all("lora_" in k or "modules_to_save" in k for k in keys)
    monkeypatch.setattr(StatementTrainer, "evaluate", real)
    resumed = StatementTrainer(cfg(**kw), TRAIN, HELD, out).run()
    assert resumed.resumed_from == 4 and [h.step for h in resumed.history] == [8]
    ref = reference.history[-1]
    assert (resumed.history[-1].loss, resumed.history[-1].accuracy) == pytest.approx((ref.loss, ref.accuracy),
                                                                                     abs=1e-4)


def test_old_pickled_checkpoint_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "old"
    (out / "checkpoint").mkdir(parents=True)
    torch.save({"progress": {"step": 4}}, out / "checkpoint" / "state.pt")
    with pytest.raises(UsageError, match=r"state.pt is a checkpoint of an older bench train .* --overwrite"):
        StatementTrainer(cfg(), TRAIN, HELD, out).run()


def test_lora_adapter_names_the_preset_and_loads(tmp_path: Path) -> None:
    out = tmp_path / "lora"
    outcome = StatementTrainer(cfg(method="lora", lr=2e-3, lora=LoraSettings(r=8, alpha=16)), TRAIN, HELD,
                               out).run()
    assert outcome.best is not None and outcome.best.accuracy >= 0.9
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == "minilm-l6"
    assert set(adapter["modules_to_save"]) >= {"classifier", "pooler"}
    assert (out / "adapter_model.safetensors").stat().st_size < 5_000_000
    umask = os.umask(0)
    os.umask(umask)
    for path in out.iterdir():  # safetensors writes 0600; the trainer applies the umask like any other file
        assert stat.S_IMODE(path.stat().st_mode) == (0o777 if path.is_dir() else 0o666) & ~umask, path.name
    backend = EncoderBackend(BackendConfig(model=str(out), dtype="fp32"))
    try:
        assert not any("untrained" in n for n in backend.notes)
        assert any("classification head loaded from the adapter" in n for n in backend.notes)
    finally:
        backend.close()
    scores = p_true(out, ["Nina loves cheese.", "Nina hates cheese."])
    assert scores[0] > scores[1]


def test_qlora_trains_on_cpu(tmp_path: Path) -> None:
    pytest.importorskip("bitsandbytes", reason="QLoRA needs the qlora extra (bitsandbytes)")
    out = tmp_path / "qlora"
    outcome = StatementTrainer(cfg(method="qlora", lr=2e-3, max_steps=4, eval_every=2), TRAIN, HELD, out).run()
    assert [h.step for h in outcome.history] == [2, 4]
    info = json.loads((out / "training.json").read_text())
    assert any("QLoRA on CPU" in n for n in info["notes"])
    assert (out / "adapter_config.json").exists()


def test_bad_config_is_one_line_usage_error(tmp_path: Path) -> None:
    for kw, needle in ((dict(batch_size=0), "--batch-size"), (dict(holdout=1.5), "--holdout"),
                       (dict(method="bogus"), "--method"), (dict(lr=-1.0), "--lr")):
        with pytest.raises(UsageError, match=needle):
            StatementTrainer(cfg(**kw), TRAIN, HELD, tmp_path / "x")

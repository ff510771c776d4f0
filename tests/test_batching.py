"""harness.batching.Collator and harness.backends.limits: the four call sites form exactly the batches, in the
same order, as the code they replaced (issue 15), and every preset resolves the same input limit as before."""

from __future__ import annotations

import random
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import pytest

from harness.backends.limits import POSITION_OFFSET_TYPES, TOKENIZER_INFINITY, model_max_length, resolve_max_length
from harness.batching import Collator
from harness.errors import UsageError

# -- reference implementations: the code before issue 15, copied verbatim (only `self.` turned into arguments) --


def old_encoder_batches(lengths: Sequence[int], batch_size: int, oom_at: Sequence[int] = ()) -> list[list[int]]:
    """EncoderBackend.score's loop; a batch whose number is in `oom_at` runs out of memory once (CUDA)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    seen: list[list[int]] = []
    start = attempt = 0
    while start < len(order):
        idx = order[start:start + batch_size]
        attempt += 1
        seen.append(idx)
        if attempt - 1 not in oom_at or len(idx) == 1:
            start += len(idx)
            continue
        batch_size = max(1, len(idx) // 2)
    return seen


def old_hf_batches(lengths: Sequence[int], *, auto_batch: bool, token_budget: int, batch_size: int, cap_rows: bool,
                   packing: bool, pack_limit: int) -> list[list[int]]:
    """HFCausalBackend._batches on rows of these lengths (row i = index i), sorted as _forward_all sorts them."""
    min_fill = 0.8
    rows = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    i = 0
    while i < len(rows):
        if auto_batch:
            width = lengths[rows[i]]
            fit = token_budget // max(width, 1)
            n = max(1, min(batch_size, fit) if cap_rows else fit)
            n = next((k for k in range(1, n) if i + k < len(rows) and lengths[rows[i + k]] < min_fill * width), n)
        else:
            n = batch_size
        batch = rows[i:i + n]
        long = lengths[batch[0]] > pack_limit
        batch = [r for r in batch if (lengths[r] > pack_limit) == long] if packing else batch
        batches.append(batch)
        i += len(batch)
    return batches


def old_batch_order(lengths: Sequence[int], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """harness.training.trainer.batch_order."""
    rng = random.Random(f"{seed}/epoch/{epoch}")
    order = list(range(len(lengths)))
    rng.shuffle(order)
    window = batch_size * 50
    batches: list[list[int]] = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start:start + window], key=lambda i: -lengths[i])
        batches.extend(chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def old_eval_batches(ids: Sequence[list[int]], batch_size: int) -> list[list[int]]:
    """Trainer.evaluate's chunks."""
    order = sorted((i for i in range(len(ids)) if ids[i]), key=lambda i: -len(ids[i]))
    return [order[start:start + batch_size * 2] for start in range(0, len(order), batch_size * 2)]


def old_workload_batches(rows: Sequence[tuple[int, ...]], batch_size: int, seed: int = 0) -> list[list[int]]:
    """harness.efficiency.workload.Workload.batches."""
    order = sorted(range(len(rows)), key=lambda i: -len(rows[i]))
    chunks = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    random.Random(f"batches/{seed}/{batch_size}").shuffle(chunks)
    return chunks


def old_encoder_max_length(config: Any, tokenizer: Any) -> int:
    """EncoderBackend._max_length without --max-length."""
    offset_types = frozenset({"roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "data2vec-text", "xmod",
                              "longformer", "roberta-prelayernorm", "mpnet", "ibert", "luke"})
    limits: list[int] = []
    tok_limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(tok_limit, int) and 0 < tok_limit < 100_000:
        limits.append(tok_limit)
    positions = getattr(config, "max_position_embeddings", None)
    if isinstance(positions, int) and positions > 0:
        offset = 2 if getattr(config, "model_type", "") in offset_types else 0
        limits.append(positions - offset)
    return min(limits) if limits else 512


def old_hf_max_length(config: Any, tokenizer: Any) -> int:
    """HFCausalBackend._max_length without --max-length."""
    cfg = getattr(config, "text_config", None) or config
    model_limit: int | None = None
    for attr in ("n_positions", "max_position_embeddings", "n_ctx"):
        value = getattr(cfg, attr, None)
        if value is not None:
            model_limit = int(value)
            break
    if model_limit is None:
        tok_limit = getattr(tokenizer, "model_max_length", None)
        model_limit = (int(tok_limit) if tok_limit is not None and tok_limit != TOKENIZER_INFINITY else 2048)
    return model_limit


# -- inputs ------------------------------------------------------------------------------------------------------


def _lengths(n: int, seed: int, low: int = 1, high: int = 120) -> list[int]:
    rng = random.Random(seed)
    return [rng.randint(low, high) for _ in range(n)]  # many ties: their order must be kept


CASES = [_lengths(n, seed) for n, seed in ((0, 0), (1, 1), (7, 2), (40, 3), (333, 4), (1000, 5))]
CASES.append([5] * 30)  # all equal
CASES.append(_lengths(2600, 6, 1, 40))  # several trainer windows


# -- Collator ----------------------------------------------------------------------------------------------------


def test_collator_sorts_longest_first_stably_and_restores_input_order() -> None:
    c = Collator([3, 9, 3, 1, 9])
    assert c.order == [1, 4, 0, 2, 3]
    batches = c.batches(2)
    assert batches == [[1, 4], [0, 2], [3]]
    assert c.restore((b, [f"r{i}" for i in b]) for b in batches) == ["r0", "r1", "r2", "r3", "r4"]
    with pytest.raises(ValueError, match="without a result"):
        c.restore([(batches[0], ["a", "b"])])
    assert c.batches(2, start=3) == [[2, 3]]


def test_collator_token_budget_split_window_and_shuffle() -> None:
    c = Collator([100, 90, 70, 60, 57, 10, 9])
    assert c.batches(None, token_budget=250) == [[0, 1], [2, 3, 4], [5, 6]]  # 250 // 100, 250 // 70, 250 // 10
    assert c.batches(2, token_budget=250) == [[0, 1], [2, 3], [4, 5], [6]]
    assert c.batches(32, token_budget=250, split=lambda first, n: n < 0.8 * first) == [[0, 1], [2, 3, 4], [5, 6]]
    assert c.batches(None, token_budget=1) == [[i] for i in range(7)]  # at least one row
    w = Collator([1, 2, 3, 4, 5], window=2)
    assert w.order == [1, 0, 3, 2, 4]
    assert w.batches(3) == [[1, 0], [3, 2], [4]]  # no batch crosses a window
    expected = [[1], [0], [3], [2], [4]]
    random.Random(0).shuffle(expected)
    assert w.batches(1, shuffle=random.Random(0)) == expected
    with pytest.raises(ValueError):
        c.batches(None)


# -- the four call sites against the code they replaced ------------------------------------------------------


@pytest.mark.parametrize("lengths", CASES)
@pytest.mark.parametrize("batch_size", [1, 3, 16, 32])
def test_encoder_batches_unchanged(lengths: list[int], batch_size: int) -> None:
    """EncoderBackend.score: the same batches, also after out-of-memory halvings (new loop as in score)."""
    for oom_at in ((), (0,), (1, 2, 5)):
        c = Collator(lengths)
        seen: list[list[int]] = []
        bs, start, attempt = batch_size, 0, 0
        pending = c.batches(bs)
        while pending:
            idx = pending.pop(0)
            attempt += 1
            seen.append(idx)
            if attempt - 1 not in oom_at or len(idx) == 1:
                start += len(idx)
                continue
            bs = max(1, len(idx) // 2)
            pending = c.batches(bs, start=start)
        assert seen == old_encoder_batches(lengths, batch_size, oom_at)


def _hf_backend(**attrs: Any) -> Any:
    from harness.backends.hf_causal import HFCausalBackend

    backend = object.__new__(HFCausalBackend)  # only what _batches reads
    for key, value in attrs.items():
        setattr(backend, key, value)
    return backend


@pytest.mark.parametrize("lengths", CASES)
@pytest.mark.parametrize(("auto", "budget", "batch_size", "cap", "packing", "limit"), [
    (True, 4096, 32, True, True, 64), (True, 4096, 32, True, False, 64), (True, 65536, 32, False, True, 1024),
    (True, 250, 2, True, True, 50), (True, 100, 8, False, False, 30), (False, 4096, 5, True, True, 60),
    (False, 4096, 7, False, False, 60), (True, 1, 4, True, True, 10),
])
def test_hf_batches_unchanged(lengths: list[int], auto: bool, budget: int, batch_size: int, cap: bool,
                              packing: bool, limit: int) -> None:
    from harness.backends.hf_causal import _Row

    rows = [_Row([tuple(range(n))], n) for n in lengths]
    by_id = {id(r): i for i, r in enumerate(rows)}
    backend = _hf_backend(auto_batch=auto, token_budget=budget, batch_size=batch_size, _cap_rows=cap,
                          _packing=packing, _pack_limit=limit)
    ordered = sorted(rows, key=lambda r: -r.length)  # as _forward_all sorts them
    new = [[by_id[id(r)] for r in b] for b in backend._batches(ordered)]
    assert new == old_hf_batches(lengths, auto_batch=auto, token_budget=budget, batch_size=batch_size,
                                 cap_rows=cap, packing=packing, pack_limit=limit)


@pytest.mark.parametrize("lengths", CASES)
@pytest.mark.parametrize("batch_size", [1, 4, 16])
def test_trainer_batches_unchanged(lengths: list[int], batch_size: int) -> None:
    from harness.training.trainer import batch_order

    for seed, epoch in ((0, 0), (13, 2)):
        assert batch_order(lengths, batch_size, seed, epoch) == old_batch_order(lengths, batch_size, seed, epoch)
    ids = [list(range(n)) if n % 7 else [] for n in lengths]  # evaluate skips dropped (empty) statements
    c = Collator([len(x) for x in ids], order=[i for i in range(len(ids)) if ids[i]])
    assert c.batches(batch_size * 2) == old_eval_batches(ids, batch_size)


@pytest.mark.parametrize("lengths", CASES)
@pytest.mark.parametrize("batch_size", [1, 5, 64])
def test_workload_batches_unchanged(lengths: list[int], batch_size: int) -> None:
    from harness.efficiency.workload import Workload

    rows = [tuple(range(n)) for n in lengths]
    w = Workload(request_kind="statement", tasks=("t",), languages={}, rows=rows, example_of_row=[0] * len(rows),
                 n_examples=1, tokenizer="own", truncated=0)
    for seed in (0, 7):
        assert w.batches(batch_size, seed) == old_workload_batches(rows, batch_size, seed)


# -- max length --------------------------------------------------------------------------------------------------

#: the input limit each preset resolved to before issue 15 (config positions, RoBERTa offset, tokenizer limit)
PRESET_LIMITS = {
    "me5-small": 512, "me5-small-st": 512, "minilm-l6": 512, "gemma3-270m": 32768, "smollm2-135m": 8192,
    "qwen2-0.5b": 32768, "qwen2-1.5b": 32768, "qwen2-7b": 32768, "qwen2-72b": 32768, "llama-3.1-8b": 131072,
    "llama-3.1-70b": 131072, "gemma-2-2b": 8192, "gemma-2-9b": 8192, "gemma-2-27b": 8192, "aya-23-8b": 8192,
    "aya-23-35b": 8192, "mdeberta-v3-base": 512, "xlm-roberta-base": 512, "xlm-roberta-large": 512,
    "mbert-base": 512,
}


def _config_and_tokenizers(name: str) -> tuple[Any, list[Any]]:
    """A preset's config, and its tokenizer (local presets) or tokenizer limits it may have (hub presets)."""
    from harness.models.materialise import adapter_base_model, is_adapter_dir, resolve_model
    from harness.models.presets import PRESETS
    from harness.models.shipped_config import load_shipped_config

    preset = PRESETS[name]
    if preset.shipped_config:
        return load_shipped_config(preset), [SimpleNamespace(model_max_length=v) for v in (TOKENIZER_INFINITY, 512)]
    from transformers import AutoConfig, AutoTokenizer

    path = resolve_model(name).path
    if is_adapter_dir(path):
        path = resolve_model(adapter_base_model(path)).path
    return (AutoConfig.from_pretrained(path, local_files_only=True),
            [AutoTokenizer.from_pretrained(path, local_files_only=True)])


def test_every_preset_resolves_the_same_max_length() -> None:
    from harness.models.presets import PRESETS

    assert set(PRESET_LIMITS) == set(PRESETS)
    for name, preset in PRESETS.items():
        config, tokenizers = _config_and_tokenizers(name)
        kind = "encoder" if preset.kind == "encoder" else "causal"
        old = old_encoder_max_length if kind == "encoder" else old_hf_max_length
        for tok in tokenizers:
            assert model_max_length(config, tok, kind) == old(config, tok) == PRESET_LIMITS[name], name


def test_max_length_rules() -> None:
    tok = SimpleNamespace(model_max_length=TOKENIZER_INFINITY)
    xlmr = SimpleNamespace(model_type="xlm-roberta", max_position_embeddings=514)
    assert model_max_length(xlmr, tok, "encoder") == 512
    assert model_max_length(xlmr, SimpleNamespace(model_max_length=256), "encoder") == 256
    assert model_max_length(SimpleNamespace(), SimpleNamespace(), "encoder") == 512
    assert model_max_length(SimpleNamespace(), tok, "causal") == 2048
    assert model_max_length(SimpleNamespace(), SimpleNamespace(model_max_length=4096), "causal") == 4096
    # causal: the config wins over the tokenizer; text_config of a multimodal config; n_positions first
    assert model_max_length(SimpleNamespace(max_position_embeddings=8192), SimpleNamespace(model_max_length=512),
                            "causal") == 8192
    multimodal = SimpleNamespace(text_config=SimpleNamespace(max_position_embeddings=131072),
                                 max_position_embeddings=4)
    assert model_max_length(multimodal, tok, "causal") == 131072
    assert model_max_length(SimpleNamespace(n_positions=1024, max_position_embeddings=9), tok, "causal") == 1024
    # both backends share one list of RoBERTa-style types (the union of the backends' and presets' lists)
    assert {"roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "mpnet", "longformer"} <= POSITION_OFFSET_TYPES
    assert model_max_length(SimpleNamespace(model_type="roberta", max_position_embeddings=514), tok, "causal") == 512
    assert resolve_max_length(xlmr, tok, "encoder", None, "m") == 512
    assert resolve_max_length(xlmr, tok, "encoder", 128, "m") == 128
    with pytest.raises(UsageError, match="--max-length 513 exceeds the limit of model m \\(512 tokens\\)"):
        resolve_max_length(xlmr, tok, "encoder", 513, "m")

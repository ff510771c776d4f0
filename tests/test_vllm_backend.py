"""vLLM backend on CPU: request building, lm-eval's truncation and log-prob parsing, and one-line errors."""

from __future__ import annotations

import builtins
import math
from dataclasses import dataclass

import pytest

from harness.backends.base import BackendConfig
from harness.backends.vllm_backend import VLLMBackend, parse_prompt_logprobs, vllm_window
from harness.core import LoglikelihoodRequest, StatementRequest
from harness.errors import ScoreError, UsageError
from harness.prompts.causal_requests import CausalRequestEncoder, EncodedUnit
from harness.prompts.judge import p_true


@dataclass
class Logprob:  # the shape of vLLM's Logprob objects
    logprob: float


def test_window_keeps_last_tokens_like_lm_eval():
    unit = EncodedUnit(context=tuple(range(10)), continuation=(100, 101, 102), where="x")
    assert vllm_window(unit, max_length=100) == ([*range(10), 100, 101, 102], 10)
    tokens, ctxlen = vllm_window(unit, max_length=6)  # room for 5 prompt tokens
    assert tokens == [8, 9, 100, 101, 102] and ctxlen == 2


def test_parse_prompt_logprobs_sum_and_greedy():
    tokens = [1, 5, 7, 9]
    lp = [None, {5: Logprob(-0.5)}, {7: Logprob(-1.0), 3: Logprob(-0.2)}, {9: Logprob(-0.1), 4: Logprob(-3.0)}]
    total, greedy = parse_prompt_logprobs(tokens, lp, ctxlen=2)
    assert math.isclose(total, -1.1) and greedy is False  # token 7 was not the top-1
    total, greedy = parse_prompt_logprobs(tokens, [None, {5: -0.5}, {7: -1.0}, {9: -0.1}], ctxlen=2)
    assert math.isclose(total, -1.1) and greedy is True  # plain floats (older vLLM) work too
    with pytest.raises(ScoreError, match="no log-probability"):
        parse_prompt_logprobs(tokens, [None, {5: -0.5}, {8: -1.0}, {9: -0.1}], ctxlen=2)


def test_missing_vllm_is_one_line_usage_error(monkeypatch: pytest.MonkeyPatch):
    real_import = builtins.__import__

    def no_vllm(name, *args, **kwargs):  # type: ignore[no-untyped-def]
        if name == "vllm" or name.startswith("vllm."):
            raise ImportError("No module named 'vllm'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_vllm)
    with pytest.raises(UsageError) as err:
        VLLMBackend(BackendConfig(model="smollm2-135m"))
    assert "\n" not in str(err.value)
    assert "pip install 'statement-bench[gpu]'" in str(err.value)
    with pytest.raises(UsageError, match="unknown option"):
        VLLMBackend(BackendConfig(model="smollm2-135m", options={"tensor_parallel": 2}))


@pytest.fixture(scope="module")
def smollm2_tokenizer():
    from transformers import AutoTokenizer

    from harness.models.presets import resolve_model

    return AutoTokenizer.from_pretrained(resolve_model("smollm2-135m").path)


@pytest.mark.slow
def test_request_encoding_matches_lm_eval_split(smollm2_tokenizer):
    enc = CausalRequestEncoder(smollm2_tokenizer, prompt="lm-eval", add_bos=None, chat_template=False,
                               max_length=8192, ref="smollm2-135m")
    req = LoglikelihoodRequest("xstorycloze/en/eval/0", 0, "He went home. ", "It rained.", "It rained.")
    (unit,) = enc.units([req])
    whole = smollm2_tokenizer.encode("He went home. It rained.")
    ctx = smollm2_tokenizer.encode("He went home.")
    assert list(unit.context) == ctx and list(unit.context + unit.continuation) == whole  # space moved over
    empty = LoglikelihoodRequest("xnli/en/test/0", 0, "", " A, right? Yes, B", "A, right? Yes, B")
    (u,) = enc.units([empty])
    assert list(u.context) == [enc.prefix_token_id]  # lm-eval: empty context -> prefix token (BOS or EOS)
    judge = CausalRequestEncoder(smollm2_tokenizer, prompt="statements", add_bos=None, chat_template=False,
                                 max_length=8192, ref="smollm2-135m")
    units = judge.units([StatementRequest("xcopa/et/test/0", 0, '"A." because "B."')])
    assert len(units) == 2 and units[0].context == units[1].context  # " True" and " False" share the context
    (score,) = judge.scores(units, [(-1.0, False), (-2.0, False)])
    assert math.isclose(score.value, p_true(-1.0, -2.0)) and judge.prompt_version == "judge-v1"

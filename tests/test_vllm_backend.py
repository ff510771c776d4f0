"""vLLM backend on CPU: request building, lm-eval's truncation and log-prob parsing, and one-line errors."""

from __future__ import annotations

import builtins
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fake_vllm as fake
import pytest

from harness.backends.base import BackendConfig
from harness.backends.vllm_backend import VLLMBackend, parse_prompt_logprobs, vllm_window
from harness.core import LoglikelihoodRequest, StatementRequest
from harness.errors import ModelError, ScoreError, UsageError
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

    from harness.models.materialise import resolve_model

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


# -- the backend against a fake vLLM engine (tests/fake_vllm.py), with the real smollm2 tokenizer --------------

_TOKENIZERS: dict[tuple[str, bool | None], Any] = {}


@pytest.fixture
def fake_vllm(monkeypatch: pytest.MonkeyPatch) -> fake.State:
    """A fake `vllm` in sys.modules and CUDA probes of a two-GPU machine; tokenizers load once per test session."""
    state = fake.install(monkeypatch)
    from transformers import AutoTokenizer

    real = AutoTokenizer.from_pretrained

    def from_pretrained(path: str, **kwargs: Any) -> Any:
        state.tokenizer_calls.append(dict(kwargs))
        key = (path, kwargs.get("add_bos_token"))
        if key not in _TOKENIZERS:
            _TOKENIZERS[key] = real(path, **kwargs)
        return _TOKENIZERS[key]

    monkeypatch.setattr(AutoTokenizer, "from_pretrained", from_pretrained)
    return state


def vllm_backend(**kwargs: Any) -> VLLMBackend:
    return VLLMBackend(BackendConfig(**{"model": "smollm2-135m", **kwargs}))


def notes_of(backend: VLLMBackend) -> str:
    return " | ".join(backend.info().notes)


def lora_adapter(tmp_path: Path, **config: Any) -> Path:
    adapter = tmp_path / "adapter"
    adapter.mkdir(exist_ok=True)
    cfg = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 12, "lora_alpha": 24, "bias": "none",
           "target_modules": ["q_proj", "v_proj"], "base_model_name_or_path": "smollm2-135m", **config}
    (adapter / "adapter_config.json").write_text(json.dumps(cfg), encoding="utf-8")
    (adapter / "adapter_model.safetensors").write_bytes(b"not read by the fake engine")
    return adapter


def test_engine_starts_with_spawned_workers_and_no_cuda_init(fake_vllm: fake.State):
    """Defect 1 (vllm#47446): probing with torch.cuda.is_available() initialises CUDA, and the default fork
    start method then kills the engine's workers; the backend probes via NVML and asks vLLM to spawn."""
    backend = vllm_backend()
    assert fake_vllm.is_available_calls == 0  # torch.cuda.device_count() (NVML) is the probe
    assert fake_vllm.engine.environ["VLLM_WORKER_MULTIPROC_METHOD"] == "spawn"
    assert "VLLM_WORKER_MULTIPROC_METHOD=spawn (set by the harness" in notes_of(backend)
    # the engine starts even when something else initialised CUDA first: spawned workers are unaffected
    fake_vllm.fork_poisoned = True
    vllm_backend()


def test_user_worker_method_is_kept_and_recorded(fake_vllm: fake.State, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("VLLM_WORKER_MULTIPROC_METHOD", "fork")
    backend = vllm_backend()
    assert fake_vllm.engine.environ["VLLM_WORKER_MULTIPROC_METHOD"] == "fork"
    assert "VLLM_WORKER_MULTIPROC_METHOD=fork (set by the user)" in notes_of(backend)


def test_no_gpu_is_one_line_model_error(monkeypatch: pytest.MonkeyPatch):
    state = fake.install(monkeypatch, gpus=0)
    with pytest.raises(ModelError, match="needs a CUDA GPU") as err:
        vllm_backend()
    assert "\n" not in str(err.value) and not state.engines and state.is_available_calls == 0


def test_engine_start_failure_is_one_line(fake_vllm: fake.State, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("VLLM_WORKER_MULTIPROC_METHOD", "fork")
    fake_vllm.fork_poisoned = True  # e.g. a user's CUDA call before the run
    with pytest.raises(ModelError, match="Cannot re-initialize CUDA in forked subprocess") as err:
        vllm_backend()
    assert "\n" not in str(err.value)


def test_prompt_logprob_memory_is_bounded(fake_vllm: fake.State):
    """Defect 2 (vllm#5907): full-vocabulary prompt log-probabilities per step scale with the batched tokens,
    so the backend bounds max_num_batched_tokens (4096 by default) and passes gpu_memory_utilization."""
    backend = vllm_backend()
    kwargs = fake_vllm.engine.kwargs
    assert kwargs["max_num_batched_tokens"] == 4096 and "gpu_memory_utilization" not in kwargs
    assert kwargs["enable_chunked_prefill"] is True  # vLLM accepts 4096 < max_model_len (8192) only with it
    assert backend.info().max_length == fake.MODEL_MAX_LEN
    assert "max_num_batched_tokens 4096" in notes_of(backend)
    backend = vllm_backend(options={"max_num_batched_tokens": 2048, "gpu_memory_utilization": 0.8})
    kwargs = fake_vllm.engine.kwargs
    assert kwargs["max_num_batched_tokens"] == 2048 and kwargs["gpu_memory_utilization"] == 0.8
    assert "gpu_memory_utilization 0.8" in notes_of(backend)


@pytest.mark.parametrize("options, needle", [
    ({"max_num_batched_tokens": 0}, "--max-num-batched-tokens"),
    ({"max_num_batched_tokens": "many"}, "--max-num-batched-tokens"),
    ({"gpu_memory_utilization": 1.5}, "--gpu-memory-utilization"),
    ({"gpu_memory_utilization": 0}, "--gpu-memory-utilization"),
    ({"distributed_executor_backend": "slurm"}, "--distributed-executor-backend"),
    ({"tensor_parallel_size": 0}, "--tensor-parallel-size"),
    ({"max_model_len": 512}, "unknown option"),
])
def test_bad_vllm_options_are_one_line_usage_errors(fake_vllm: fake.State, options: dict[str, Any], needle: str):
    with pytest.raises(UsageError, match=needle) as err:
        vllm_backend(options=options)
    assert "\n" not in str(err.value) and not fake_vllm.engines


def test_lora_adapter_goes_through_lora_request(fake_vllm: fake.State, tmp_path: Path):
    """Defect 3: --adapter was silently ignored; a LoRA adapter now reaches every generate call."""
    adapter = lora_adapter(tmp_path, rank_pattern={"v_proj": 20})
    backend = vllm_backend(adapter=str(adapter))
    kwargs = fake_vllm.engine.kwargs
    assert kwargs["enable_lora"] is True and kwargs["max_lora_rank"] == 32  # max(12, 20) -> vLLM's next size
    req = LoglikelihoodRequest("xcopa/et/test/0", 0, "The man went home. ", "It rained.", "It rained.")
    (score,) = backend.score([req])
    (call,) = fake_vllm.engine.generate_calls
    assert call["lora_request"].lora_path == str(adapter) and call["lora_request"].lora_int_id == 1
    tokens = call["prompts"][0]["prompt_token_ids"]
    (unit,) = backend.request_encoder.units([req])
    expected, _ = parse_prompt_logprobs(tokens, fake.prompt_logprobs(tokens, lora=True), len(unit.context))
    assert math.isclose(score.value, expected)  # the adapter's log-probabilities, not the base model's
    info = backend.info()
    assert info.adapter == str(adapter) and info.revision is not None and "+adapter:sha256:" in info.revision
    assert "LoRA adapter" in notes_of(backend) and "max_lora_rank 32" in notes_of(backend)


@pytest.mark.parametrize("config, needle", [
    ({"peft_type": "IA3"}, "IA3 adapter"),
    ({"use_dora": True}, "DoRA"),
    ({"modules_to_save": ["lm_head"]}, "modules_to_save"),
    ({"bias": "all"}, "bias"),
    ({"r": 1024}, "rank 1024"),
])
def test_adapters_vllm_cannot_serve_are_refused(fake_vllm: fake.State, tmp_path: Path, config: dict[str, Any],
                                               needle: str):
    with pytest.raises(UsageError, match=needle) as err:
        vllm_backend(adapter=str(lora_adapter(tmp_path, **config)))
    assert "\n" not in str(err.value) and not fake_vllm.engines


def test_max_length_becomes_max_model_len(fake_vllm: fake.State):
    backend = vllm_backend(max_length=1024)
    assert fake_vllm.engine.kwargs["max_model_len"] == 1024
    assert backend.info().max_length == 1024 and backend.request_encoder.max_length == 1024
    with pytest.raises(UsageError, match="--max-length"):
        vllm_backend(max_length=1)


def test_device_index_selects_the_gpu_through_cuda_visible_devices(fake_vllm: fake.State,
                                                                  monkeypatch: pytest.MonkeyPatch):
    backend = vllm_backend(device="cuda:1")
    assert fake_vllm.engine.environ["CUDA_VISIBLE_DEVICES"] == "1"
    assert "CUDA_VISIBLE_DEVICES=1" in backend.info().device and "CUDA_VISIBLE_DEVICES=1" in notes_of(backend)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,0")  # cuda:N counts within what is already visible
    vllm_backend(device="cuda:1")
    assert fake_vllm.engine.environ["CUDA_VISIBLE_DEVICES"] == "0"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,0")  # the backend narrowed it for this process
    with pytest.raises(UsageError, match="only 2 visible"):
        vllm_backend(device="cuda:2")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    with pytest.raises(ModelError, match="needs a CUDA GPU"):  # no such GPU on this machine
        vllm_backend(device="cuda:7")
    n_engines = len(fake_vllm.engines)
    for device, needle in (("cpu", "needs a CUDA GPU"), ("mps", "--device"), ("cuda:x", "--device")):
        with pytest.raises(UsageError, match=needle):
            vllm_backend(device=device)
    with pytest.raises(UsageError, match="tensor-parallel"):
        vllm_backend(device="cuda:0", options={"tensor_parallel_size": 2})
    with pytest.raises(UsageError, match="--threads"):
        vllm_backend(threads=4)
    assert len(fake_vllm.engines) == n_engines


def test_add_bos_reaches_the_tokenizer(fake_vllm: fake.State):
    """--add-bos goes to the tokenizer as in the hf backend (and lm-eval): smollm2 adds no BOS by default, and
    `add_special_tokens=True` alone does not add one."""
    req = LoglikelihoodRequest("xcopa/et/test/0", 0, "The man went home. ", "It rained.", "It rained.")
    vllm_backend().score([req])
    assert fake_vllm.engine.generate_calls[0]["prompts"][0]["prompt_token_ids"][0] != 1
    backend = vllm_backend(add_bos=True)
    backend.score([req])
    assert fake_vllm.tokenizer_calls[-1]["add_bos_token"] is True
    assert fake_vllm.engine.generate_calls[0]["prompts"][0]["prompt_token_ids"][0] == 1  # smollm2's BOS


def test_dtype_and_prefix_caching_recorded_truthfully(fake_vllm: fake.State):
    backend = vllm_backend(dtype="auto")
    assert fake_vllm.engine.kwargs["dtype"] == "auto" and backend.info().dtype == "bfloat16"  # from the engine
    assert fake_vllm.engine.kwargs["enable_prefix_caching"] is False
    assert "prefix caching off" in notes_of(backend)
    backend = vllm_backend(dtype="fp16", options={"enable_prefix_caching": True})
    assert backend.info().dtype == "float16"
    note = notes_of(backend)
    assert "prefix caching: enabled in the engine but not used" in note and "prefix caching on" not in note


def test_distributed_executor_backend_is_passed(fake_vllm: fake.State):
    backend = vllm_backend(options={"pipeline_parallel_size": 2, "distributed_executor_backend": "ray"})
    kwargs = fake_vllm.engine.kwargs
    assert kwargs["distributed_executor_backend"] == "ray" and kwargs["pipeline_parallel_size"] == 2
    assert "distributed_executor_backend ray" in notes_of(backend)


def test_scores_follow_prompt_logprobs(fake_vllm: fake.State):
    backend = vllm_backend()
    reqs = [LoglikelihoodRequest("xcopa/et/test/0", i, "The man went home. ", c, c) for i, c in
            enumerate(("It rained.", "He slept."))]
    scores = backend.score(reqs)
    (call,) = fake_vllm.engine.generate_calls
    assert call["lora_request"] is None and call["sampling_params"].kwargs["prompt_logprobs"] == 1
    units = backend.request_encoder.units(reqs)
    for unit, prompt, score in zip(units, call["prompts"], scores, strict=True):
        tokens = prompt["prompt_token_ids"]
        expected, _ = parse_prompt_logprobs(tokens, fake.prompt_logprobs(tokens, lora=False), len(unit.context))
        assert math.isclose(score.value, expected)


def test_requests_cut_to_the_window_are_flagged_truncated(fake_vllm: fake.State):
    """vLLM keeps the last max_length - 1 tokens of a request (lm-eval's rule): a longer one is scored on its end
    only and must say so, as the hf backend's scores do."""
    backend = vllm_backend(max_length=12)
    reqs = [LoglikelihoodRequest("xcopa/et/test/0", 0, "Hi. ", "Yes.", "Yes."),
            LoglikelihoodRequest("xcopa/et/test/0", 1, "The man went home because it was late at night. ",
                                 "He slept.", "He slept.")]
    units = backend.request_encoder.units(reqs)
    lengths = [len(u.context) + len(u.continuation) for u in units]
    assert lengths[0] <= 11 < lengths[1]
    scores = backend.score(reqs)
    assert [s.truncated for s in scores] == [False, True]
    (call,) = fake_vllm.engine.generate_calls
    assert len(call["prompts"][1]["prompt_token_ids"]) == 11


def test_cli_run_passes_vllm_options(fake_vllm: fake.State, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import torch
    from click.testing import CliRunner

    import harness.device
    from harness.cli import main

    cpu_environment = harness.device.environment

    def environment() -> dict[str, object]:  # the fake GPUs have no properties: record this CPU machine
        with monkeypatch.context() as m:
            m.setattr(torch.cuda, "is_available", lambda: False)
            return cpu_environment()

    monkeypatch.setattr(harness.device, "environment", environment)
    res = CliRunner().invoke(main, [
        "run", "--backend", "vllm", "--model", "smollm2-135m", "--tasks", "xcopa", "--langs", "et", "--limit", "2",
        "--max-num-batched-tokens", "2048", "--gpu-memory-utilization", "0.85",
        "--distributed-executor-backend", "mp", "--max-length", "2048", "--output", str(tmp_path), "--quiet"],
        catch_exceptions=False)
    assert res.exit_code == 0, res.output
    kwargs = fake_vllm.engine.kwargs
    assert kwargs["max_num_batched_tokens"] == 2048 and kwargs["gpu_memory_utilization"] == 0.85
    assert kwargs["distributed_executor_backend"] == "mp" and kwargs["max_model_len"] == 2048
    result = json.loads(next(tmp_path.glob("*/result.json")).read_text(encoding="utf-8"))
    assert result["model"]["dtype"] == "bfloat16" and result["model"]["max_length"] == 2048
    assert any("VLLM_WORKER_MULTIPROC_METHOD=spawn" in n for n in result["model"]["notes"])
    bad = CliRunner().invoke(main, ["run", "--backend", "vllm", "--model", "smollm2-135m", "--tasks", "xcopa",
                                    "--langs", "et", "--limit", "1", "--gpu-memory-utilization", "2",
                                    "--output", str(tmp_path / "bad"), "--quiet"])
    assert bad.exit_code == 2 and bad.output.count("\n") == 1, bad.output


def test_judge_mode_records_the_judge_prompt(fake_vllm: fake.State):
    """Judging statements on vLLM records the judge prompt with the run's prompt, as backend hf does (the runner
    read it with getattr before, and vLLM had none: its judge runs recorded the statements version alone)."""
    assert vllm_backend(prompt="statements").prompt_version == "judge-v1"
    assert vllm_backend().prompt_version is None and vllm_backend().numerics is None

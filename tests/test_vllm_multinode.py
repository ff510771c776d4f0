"""Llama-3.1-70B on 2 nodes x 4 GPUs (tensor 4 x pipeline 2, Ray): the command a user runs on the head node,
checked end to end on CPU with the vLLM double (tests/fake_vllm.py).

What is proven here: the CLI flags reach `vllm.LLM` unchanged, the harness does not narrow the GPUs the engine
sees (Ray places the 8 workers on both nodes), the requests the engine gets are exactly lm-eval 0.4.13's, tokenised
by the model's tokenizer, and the result file records the engine settings. What needs the real cluster: the Ray
placement itself and the numbers. Llama's own tokenizer is gated on the hub, so the bundled smollm2-135m tokenizer
stands in for it (the request building is the same code for any tokenizer)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import fake_vllm as fake
import pytest
import torch
from click.testing import CliRunner

from harness import device as device_module
from harness.cli import main
from harness.models.materialise import resolve_model
from harness.models.presets import PRESETS
from harness.prompts.causal_requests import CausalRequestEncoder
from harness.prompts.lm_eval_prompts import LMEvalRequestBuilder
from harness.runner import RunConfig, plan_run

LLAMA = "llama-3.1-70b"
HEAD_NODE_GPUS = 4
COMMAND = ["run", "--backend", "vllm", "--model", LLAMA, "--tensor-parallel-size", "4",
           "--pipeline-parallel-size", "2", "--distributed-executor-backend", "ray",
           "--tasks", "xcopa", "--langs", "et", "--limit", "3", "--quiet"]


@pytest.fixture
def head_node(monkeypatch: pytest.MonkeyPatch) -> tuple[fake.State, Any]:
    """The head node of the Ray cluster: 4 GPUs visible, vLLM faked, Llama's tokenizer stood in by smollm2's."""
    state = fake.install(monkeypatch, gpus=HEAD_NODE_GPUS)
    from transformers import AutoTokenizer

    stand_in = AutoTokenizer.from_pretrained(resolve_model("smollm2-135m").path)
    hub_id = PRESETS[LLAMA].hub_id

    def from_pretrained(path: str, **kwargs: Any) -> Any:
        assert path == hub_id, path  # the engine and the tokenizer get the preset's hub id
        state.tokenizer_calls.append(dict(kwargs))
        return stand_in

    monkeypatch.setattr(AutoTokenizer, "from_pretrained", from_pretrained)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *_: "NVIDIA H100 80GB HBM3")  # result environment
    monkeypatch.setattr(device_module, "_cuda_driver", lambda: "570.00")
    return state, stand_in


def test_two_nodes_tensor_4_pipeline_2_over_ray(head_node: tuple[fake.State, Any], tmp_path: Path) -> None:
    state, tokenizer = head_node
    out = tmp_path / "results"
    result = CliRunner().invoke(main, [*COMMAND, "--output", str(out)])
    assert result.exit_code == 0, result.output
    engine = state.engine
    kwargs = engine.kwargs
    assert kwargs["model"] == PRESETS[LLAMA].hub_id
    assert (kwargs["tensor_parallel_size"], kwargs["pipeline_parallel_size"]) == (4, 2)
    assert kwargs["distributed_executor_backend"] == "ray"
    assert kwargs["max_num_batched_tokens"] == 4096 and kwargs["enable_chunked_prefill"] is True
    assert "CUDA_VISIBLE_DEVICES" not in engine.environ  # Ray places the 8 workers; nothing narrows the GPUs

    # the engine got exactly lm-eval's requests, tokenised as lm-eval's HFLM does
    plan = plan_run(RunConfig(backend="vllm", model=LLAMA, tasks=("xcopa",), languages=("et",), limit=3))
    builder = LMEvalRequestBuilder(plan.tasks, plan.prompts)
    requests = [r for ex in plan.example_sets[0].examples for r in builder.build(ex)[1]]
    encoder = CausalRequestEncoder(tokenizer, prompt="lm-eval", add_bos=None, chat_template=False,
                                   max_length=fake.MODEL_MAX_LEN, ref=LLAMA)
    expected = [list(u.context + u.continuation) for u in encoder.units(requests)]
    sent = [list(p["prompt_token_ids"]) for call in engine.generate_calls for p in call["prompts"]]
    assert sent == expected and len(sent) == 6  # 3 examples x 2 choices

    (result_file,) = out.glob("*/result.json")
    record = json.loads(result_file.read_text(encoding="utf-8"))
    notes = " | ".join(record["model"]["notes"])
    assert "tensor_parallel_size 4, pipeline_parallel_size 2, distributed_executor_backend ray" in notes
    assert dict(record["config"]["backend_options"]) == {
        "tensor_parallel_size": 4, "pipeline_parallel_size": 2, "distributed_executor_backend": "ray"}
    assert record["tasks"]["xcopa"]["languages"]["et"]["n"] == 3


def test_one_gpu_device_is_refused_with_parallelism(head_node: tuple[fake.State, Any], tmp_path: Path) -> None:
    state, _ = head_node
    result = CliRunner().invoke(main, [*COMMAND, "--device", "cuda:0", "--output", str(tmp_path)])
    assert result.exit_code == 2 and not state.engines
    assert "--device cuda:0 selects one GPU, but --tensor-parallel-size x --pipeline-parallel-size is 8" in \
        result.output

"""A stand-in for the `vllm` package (0.33.0's API) so the vLLM backend is tested on CPU.

`install(monkeypatch)` puts modules `vllm` and `vllm.lora.request` into sys.modules and patches torch's CUDA probes
to a machine with two GPUs. The fake engine records what the backend asks of it: the `LLM(...)` keyword arguments,
a copy of `os.environ` at the moment the engine starts, and each `generate` call with its `lora_request`. It returns
deterministic prompt log-probabilities in vLLM's shape (`None` first, then {token id: Logprob} holding the prompt
token and the top-1 token), and exposes `llm_engine.model_config.dtype` / `max_model_len` and the resolved cache and
scheduler configs like the real engine.

Two upstream behaviours are modelled because the backend depends on them:
- fork poisoning: `torch.cuda.is_available()` initialises the CUDA driver (cuInit via cudaGetDeviceCount), so a
  worker *forked* afterwards fails with "Cannot re-initialize CUDA in forked subprocess" (vllm#47446); vLLM 0.33's
  own guard (vllm/utils/system_utils.py `_maybe_force_spawn`) only checks `torch.cuda.is_initialized()`, which is
  still False then. `torch.cuda.device_count()` asks NVML first and does not poison.
- vllm/config/scheduler.py `verify_max_model_len`: max_num_batched_tokens < max_model_len is refused unless chunked
  prefill is on (it is by default for decoder-only generative models: vllm/config/model.py
  `is_chunked_prefill_supported`).
"""

from __future__ import annotations

import os
import sys
import types
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch

__version__ = "0.33.0"
MODEL_MAX_LEN = 8192  # what the engine derives from the model's config when max_model_len is not given
DEFAULT_BATCHED_TOKENS = 16384  # EngineArgs.get_batch_defaults: LLM_CLASS on an H100/H200
PHYSICAL_GPUS = 2
DTYPES = {"auto": torch.bfloat16, "bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


@dataclass
class Logprob:
    logprob: float
    rank: int | None = None
    decoded_token: str | None = None


class SamplingParams:
    """Keeps its keyword arguments; like 0.33's `__post_init__`, prompt_logprobs turns prefix-cache reads off."""

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.prompt_logprobs = kwargs.get("prompt_logprobs")
        skip = kwargs.get("skip_reading_prefix_cache")
        # vllm/sampling_params.py (0.33.0) __post_init__: None -> prompt_logprobs is not None
        self.skip_reading_prefix_cache = self.prompt_logprobs is not None if skip is None else skip


@dataclass
class LoRARequest:
    lora_name: str
    lora_int_id: int
    lora_path: str = ""

    def __post_init__(self) -> None:
        if self.lora_int_id < 1:
            raise ValueError(f"id must be > 0, got {self.lora_int_id}")
        assert self.lora_path, "lora_path cannot be empty"


@dataclass
class RequestOutput:
    prompt_token_ids: list[int]
    prompt_logprobs: list[dict[int, Logprob] | None]


@dataclass
class State:
    """What the fake saw; `fork_poisoned` is set once something initialised the CUDA driver before the engine."""

    engines: list[LLM] = field(default_factory=list)
    fork_poisoned: bool = False
    is_available_calls: int = 0
    gpus: int = PHYSICAL_GPUS
    tokenizer_calls: list[dict[str, Any]] = field(default_factory=list)  # filled by the test's tokenizer patch

    @property
    def engine(self) -> LLM:
        assert self.engines, "no vLLM engine was started"
        return self.engines[-1]


STATE = State()


def token_logprob(previous: int, token: int, position: int, lora: bool) -> float:
    """A deterministic, negative log-probability (an adapter shifts it, so tests can tell it was applied)."""
    value = -0.05 - ((token * 31 + previous * 17 + position) % 97) / 20.0
    return value - 0.25 if lora else value


def top_token(previous: int) -> int:
    return (previous * 7 + 3) % 50000


def prompt_logprobs(tokens: Sequence[int], lora: bool) -> list[dict[int, Logprob] | None]:
    out: list[dict[int, Logprob] | None] = [None]  # the first prompt token has no log-probability
    for i in range(1, len(tokens)):
        token, top = tokens[i], top_token(tokens[i - 1])
        lp = token_logprob(tokens[i - 1], token, i, lora)
        if top == token:
            out.append({token: Logprob(lp, rank=1)})
        else:
            out.append({token: Logprob(lp, rank=2), top: Logprob(min(lp + 1.0, -0.01), rank=1)})
    return out


class LLM:
    def __init__(self, model: str, **kwargs: Any) -> None:
        self.kwargs: dict[str, Any] = {"model": model, **kwargs}
        self.environ = dict(os.environ)
        self.generate_calls: list[dict[str, Any]] = []
        if STATE.fork_poisoned and self.environ.get("VLLM_WORKER_MULTIPROC_METHOD", "fork") != "spawn":
            raise RuntimeError("Cannot re-initialize CUDA in forked subprocess. To use CUDA with multiprocessing, "
                               "you must use the 'spawn' start method\n(engine core traceback follows)")
        max_model_len = kwargs.get("max_model_len") or MODEL_MAX_LEN
        chunked = kwargs.get("enable_chunked_prefill")
        chunked = True if chunked is None else bool(chunked)  # decoder-only generative default
        batched = kwargs.get("max_num_batched_tokens") or DEFAULT_BATCHED_TOKENS
        if batched < max_model_len and not chunked:
            raise ValueError(f"max_num_batched_tokens ({batched}) is smaller than max_model_len ({max_model_len}). "
                             "This effectively limits the maximum sequence length ...")
        if kwargs.get("enable_lora") and kwargs.get("max_lora_rank") not in (1, 8, 16, 32, 64, 128, 256, 320, 512):
            raise ValueError(f"max_lora_rank {kwargs.get('max_lora_rank')} is not a supported rank")
        prefix = kwargs.get("enable_prefix_caching")
        model_config = types.SimpleNamespace(dtype=DTYPES[kwargs.get("dtype", "auto")], max_model_len=max_model_len)
        self.llm_engine = types.SimpleNamespace(
            model_config=model_config,
            vllm_config=types.SimpleNamespace(
                model_config=model_config,
                cache_config=types.SimpleNamespace(enable_prefix_caching=True if prefix is None else bool(prefix)),
                scheduler_config=types.SimpleNamespace(max_num_batched_tokens=batched,
                                                       enable_chunked_prefill=chunked)))
        STATE.engines.append(self)

    def generate(self, prompts: Sequence[dict[str, Any]], sampling_params: SamplingParams | None = None, *,
                 use_tqdm: bool = True, lora_request: LoRARequest | None = None) -> list[RequestOutput]:
        self.generate_calls.append({"prompts": list(prompts), "sampling_params": sampling_params,
                                    "lora_request": lora_request})
        if lora_request is not None and not self.kwargs.get("enable_lora"):
            raise ValueError(f"LoRA is not enabled! lora_request={lora_request}")
        outputs = []
        for prompt in prompts:
            tokens = list(prompt["prompt_token_ids"])
            outputs.append(RequestOutput(tokens, prompt_logprobs(tokens, lora_request is not None)))
        return outputs


def _visible_gpus() -> int:
    """torch.cuda.device_count() through NVML: the physical GPUs that CUDA_VISIBLE_DEVICES names."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return STATE.gpus
    count = 0
    for item in visible.split(","):
        if not item.strip().isdigit() or int(item) >= STATE.gpus:
            break  # CUDA stops at the first invalid entry
        count += 1
    return count


def _is_available() -> bool:
    STATE.is_available_calls += 1
    STATE.fork_poisoned = True  # cudaGetDeviceCount -> cuInit: a later fork cannot use CUDA
    return STATE.gpus > 0


def install(monkeypatch: pytest.MonkeyPatch, *, gpus: int = PHYSICAL_GPUS) -> State:
    """Install the fake `vllm` (and fake CUDA probes); monkeypatch undoes it, the environment included."""
    global STATE
    STATE = State(gpus=gpus)
    vllm = types.ModuleType("vllm")
    vllm.__version__ = __version__  # type: ignore[attr-defined]
    vllm.LLM = LLM  # type: ignore[attr-defined]
    vllm.SamplingParams = SamplingParams  # type: ignore[attr-defined]
    lora = types.ModuleType("vllm.lora")
    lora_request = types.ModuleType("vllm.lora.request")
    lora_request.LoRARequest = LoRARequest  # type: ignore[attr-defined]
    vllm.lora = lora  # type: ignore[attr-defined]
    lora.request = lora_request  # type: ignore[attr-defined]
    for name, module in (("vllm", vllm), ("vllm.lora", lora), ("vllm.lora.request", lora_request)):
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(torch.cuda, "is_available", _is_available)
    monkeypatch.setattr(torch.cuda, "device_count", _visible_gpus)
    for var in ("VLLM_WORKER_MULTIPROC_METHOD", "CUDA_VISIBLE_DEVICES"):
        monkeypatch.delenv(var, raising=False)  # the backend may set them; monkeypatch restores them
    return STATE

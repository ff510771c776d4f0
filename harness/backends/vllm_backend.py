"""Causal LM on vLLM: the same lm-eval requests as the `hf` backend, scored from prompt log-probabilities.

vLLM is an optional extra (``pip install 'statement-bench[gpu]'``) and is imported only when this backend is
chosen. Large models span GPUs with ``--tensor-parallel-size`` (within a node) and ``--pipeline-parallel-size``
(across nodes, via Ray): vLLM's own engines, never a home-made one. Requests are tokenised exactly as the `hf`
backend does it (lm-eval 0.4.13's split), then each context+continuation is sent once as token ids with
``SamplingParams(prompt_logprobs=1, max_tokens=1)``; the continuation's log-likelihood is the sum of the prompt
log-probabilities at its positions, and "greedy" checks that each continuation token is the top-1 token —
the same parsing as lm-eval's ``VLLM._parse_logprobs``.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from harness.backends.base import BackendConfig, ModelInfo
from harness.core import Request, RequestKind, Score
from harness.errors import ModelError, ScoreError, UsageError
from harness.prompts.causal_requests import CausalRequestEncoder, EncodedUnit

VLLM_OPTIONS = ("tensor_parallel_size", "pipeline_parallel_size", "enable_prefix_caching",
                "gpu_memory_utilization", "distributed_executor_backend", "max_model_len")


def vllm_window(unit: EncodedUnit, max_length: int) -> tuple[list[int], int]:
    """lm-eval's vLLM truncation: keep the last max_length-1 tokens; return (tokens, context length)."""
    max_ctx = max_length - 1  # vLLM needs room for one generated token
    whole = list(unit.context) + list(unit.continuation)
    tokens = whole[-max_ctx:]
    ctxlen = len(unit.context) - max(0, len(whole) - max_ctx)
    return tokens, ctxlen


def parse_prompt_logprobs(tokens: Sequence[int], prompt_logprobs: Sequence[Mapping[int, Any] | None],
                          ctxlen: int) -> tuple[float, bool]:
    """Sum the log-probabilities of tokens[ctxlen:]; greedy iff each is the top-1 (lm-eval's rule)."""
    if len(prompt_logprobs) != len(tokens):
        raise ScoreError(f"vLLM returned {len(prompt_logprobs)} prompt log-probabilities for {len(tokens)} tokens")
    total = 0.0
    greedy = True
    for token, entry in zip(tokens[ctxlen:], prompt_logprobs[ctxlen:], strict=True):
        if entry is None or token not in entry:
            raise ScoreError(f"vLLM returned no log-probability for prompt token {token}")
        values = {t: float(getattr(lp, "logprob", lp)) for t, lp in entry.items()}
        total += values[token]
        if max(values, key=lambda t: values[t]) != token:
            greedy = False
    return total, greedy


def _import_vllm() -> Any:
    try:
        return importlib.import_module("vllm")
    except ImportError as err:
        raise UsageError("backend 'vllm' needs the package vllm and a CUDA GPU: "
                         "pip install 'statement-bench[gpu]'") from err


class VLLMBackend:
    """Backend ``vllm``: prompt log-probabilities for lm-eval requests (or judge-mode statements)."""

    name: ClassVar[str] = "vllm"
    request_kind: RequestKind

    def __init__(self, config: BackendConfig) -> None:
        unknown = sorted(set(config.options) - set(VLLM_OPTIONS))
        if unknown:
            raise UsageError(f"vllm backend: unknown option(s) {', '.join(unknown)}")
        vllm = _import_vllm()
        import torch

        if not torch.cuda.is_available():
            raise ModelError("backend 'vllm' needs a CUDA GPU, and torch sees none (use --backend hf on CPU)")
        from transformers import AutoTokenizer

        from harness.backends.hf_causal import default_model
        from harness.models.presets import resolve_model

        self.config = config
        self.ref = config.model or default_model()
        resolved = resolve_model(self.ref)
        self.path = resolved.path
        self.revision = resolved.revision
        dtype = {"auto": "auto", "fp32": "float32", "float32": "float32", "bf16": "bfloat16",
                 "bfloat16": "bfloat16", "fp16": "float16", "float16": "float16"}.get(config.dtype.lower())
        if dtype is None:
            raise UsageError(f"--dtype {config.dtype!r}: choose auto, fp32, bf16 or fp16")
        tokenizer = AutoTokenizer.from_pretrained(self.path, trust_remote_code=config.trust_remote_code)
        engine_args: dict[str, Any] = {
            "model": self.path, "tokenizer": self.path, "dtype": dtype, "seed": config.seed,
            "trust_remote_code": config.trust_remote_code,
            "tensor_parallel_size": int(config.options.get("tensor_parallel_size", 1)),
            "pipeline_parallel_size": int(config.options.get("pipeline_parallel_size", 1)),
            "enable_prefix_caching": bool(config.options.get("enable_prefix_caching", True)),
        }
        for key in ("gpu_memory_utilization", "distributed_executor_backend", "max_model_len"):
            if key in config.options:
                engine_args[key] = config.options[key]
        try:
            self.llm = vllm.LLM(**engine_args)
        except Exception as err:  # engine start-up errors are long; keep the first line
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ModelError(f"vLLM could not start model {self.ref}: {first}") from err
        self.engine_args = engine_args
        self.sampling = vllm.SamplingParams(temperature=0, prompt_logprobs=1, max_tokens=1, detokenize=False)
        max_length = int(getattr(self.llm.llm_engine.model_config, "max_model_len", 2048))
        self.encoder = CausalRequestEncoder(tokenizer, prompt=config.prompt, add_bos=config.add_bos,
                                            chat_template=config.chat_template, max_length=max_length,
                                            ref=self.ref)
        self.request_kind = self.encoder.request_kind
        self._vllm = vllm

    def info(self) -> ModelInfo:
        e = self.engine_args
        notes = (f"vLLM {getattr(self._vllm, '__version__', '?')}: tensor_parallel_size {e['tensor_parallel_size']}, "
                 f"pipeline_parallel_size {e['pipeline_parallel_size']}, "
                 f"prefix caching {'on' if e['enable_prefix_caching'] else 'off'}", *self.encoder.notes)
        return ModelInfo(backend=self.name, model=self.ref, path=self.path, revision=self.revision, adapter=None,
                         dtype=str(e["dtype"]), device="cuda (vLLM)", num_parameters=None,
                         max_length=self.encoder.max_length, threads=None, notes=tuple(notes))

    def score(self, requests: Sequence[Request]) -> list[Score]:
        units = self.encoder.units(requests)
        windows = [vllm_window(u, self.encoder.max_length) for u in units]
        prompts = [{"prompt_token_ids": tokens} for tokens, _ in windows]
        outputs = self.llm.generate(prompts, self.sampling, use_tqdm=False)
        raw = [parse_prompt_logprobs(tokens, out.prompt_logprobs, ctxlen)
               for (tokens, ctxlen), out in zip(windows, outputs, strict=True)]
        return self.encoder.scores(units, raw)

    def close(self) -> None:
        del self.llm

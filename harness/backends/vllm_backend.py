"""Causal LM on vLLM: the same lm-eval requests as the `hf` backend, scored from prompt log-probabilities.

vLLM is an optional extra (``pip install 'statement-bench[gpu]'``, vllm==0.33.0) and is imported only when this
backend is chosen. Large models span GPUs with ``--tensor-parallel-size`` (within a node) and
``--pipeline-parallel-size`` (across nodes, ``--distributed-executor-backend ray``): vLLM's own engines, never a
home-made one. Requests are tokenised exactly as the `hf` backend does it (lm-eval 0.4.13's split, the tokenizer
loaded with the same ``add_bos_token``), then each context+continuation is sent once as token ids with
``SamplingParams(prompt_logprobs=1, max_tokens=1)``; the continuation's log-likelihood is the sum of the prompt
log-probabilities at its positions, and "greedy" checks that each continuation token is the top-1 token — the same
parsing as lm-eval's ``VLLM._parse_logprobs``. A LoRA adapter is applied by vLLM per request (``LoRARequest``), as
lm-eval's ``lora_local_path`` does; other adapters are refused.

Every engine setting the harness chooses is recorded in the run's model notes, read back from the engine where it
exposes it (dtype, max_model_len, prefix caching, batched tokens).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from harness.backends.base import BackendConfig, ModelInfo
from harness.backends.options import VLLMOptions
from harness.core import Request, RequestKind, Score
from harness.errors import ModelError, ScoreError, UsageError, one_line
from harness.prompts.causal_requests import CausalRequestEncoder, EncodedUnit, request_kind_for

# Prompt log-probabilities need the full-vocabulary logits of every prompt token in a step, memory that vLLM's
# profiling long left out (vllm#5907). The LLM class's default step on an H100/H200 is 16,384 tokens
# (vllm/engine/arg_utils.py get_batch_defaults); with Gemma's 262,144-token vocabulary that is 16,384 x 262,144 =
# 4.3e9 logits: 8 GiB in bf16 plus 16 GiB as fp32 log-probabilities, ~24 GiB on top of the KV cache. 4,096 tokens
# cut that to ~6 GiB (3 GiB at Llama 3's 128k vocabulary) and a step still holds dozens of our prompts (most are
# under 200 tokens). vLLM 0.33's GPU runner also slices prompt logits into 1,024-row chunks
# (vllm/v1/worker/gpu/sample/prompt_logprob.py CHUNK_SIZE), but activations and the step's log-prob tensors still
# grow with the step. Below max_model_len vLLM accepts the bound only with chunked prefill
# (vllm/config/scheduler.py verify_max_model_len), so it is turned on explicitly (vLLM's default for decoder-only
# models anyway: vllm/config/model.py is_chunked_prefill_supported); a prompt split over steps keeps its
# log-probabilities (prompt_logprob.py merges the chunks).
# The default, DEFAULT_MAX_NUM_BATCHED_TOKENS = 4096, lives with the typed options (harness.backends.options).

# vllm/config/lora.py (0.33.0) MaxLoRARanks: the values max_lora_rank may take.
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
# vllm/lora/peft_helper.py _init_is_supported: string inits that leave a plain LoRA.
_LORA_INITS = ("gaussian", "eva", "orthogonal", "mica", "lora_ga")


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


def visible_device(device: str, world_size: int) -> str | None:
    """The CUDA_VISIBLE_DEVICES value for ``--device`` (None: leave it). vLLM takes no device index (lm-eval's
    vLLM backend says the same), so ``cuda:N`` narrows what the engine sees, counting as torch does within the
    GPUs already visible."""
    value = (device or "").strip().lower()
    if value in ("auto", "cuda"):
        return None
    if value == "cpu":
        raise UsageError("backend 'vllm' needs a CUDA GPU; --device cpu is not possible (use --backend hf on CPU)")
    if not (value.startswith("cuda:") and value[5:].isdigit()):
        raise UsageError(f"--device {device!r} is not valid for backend vllm; choose auto, cuda or cuda:N")
    if world_size > 1:
        raise UsageError(f"--device {value} selects one GPU, but --tensor-parallel-size x --pipeline-parallel-size "
                         f"is {world_size}; leave --device auto and choose GPUs with CUDA_VISIBLE_DEVICES")
    index = int(value[5:])
    current = os.environ.get("CUDA_VISIBLE_DEVICES")
    if current is None:
        return str(index)
    visible = [v.strip() for v in current.split(",") if v.strip()]
    if index >= len(visible):
        raise UsageError(f"--device {value}: CUDA_VISIBLE_DEVICES={current} makes only {len(visible)} visible GPU(s)")
    return visible[index]


def lora_rank(adapter_dir: str) -> int:
    """max_lora_rank for a peft adapter vLLM can serve (the adapter's largest rank rounded up to a size vLLM
    allows); a one-line UsageError for an adapter it cannot serve, before the engine starts."""
    from harness.models.materialise import read_adapter_config

    cfg = read_adapter_config(adapter_dir)
    kind = str(cfg.get("peft_type") or "LORA").upper()
    if kind != "LORA":
        raise UsageError(f"--adapter {adapter_dir} is a {kind} adapter; backend vllm serves LoRA adapters only "
                         "(--backend hf merges any peft adapter)")
    # what vLLM's PEFTHelper refuses (vllm/lora/peft_helper.py _validate_features, validate_legal), in one line
    problems = []
    if cfg.get("task_type") in ("SEQ_CLS", "TOKEN_CLS"):
        problems.append(f"a classification head (task_type {cfg['task_type']})")
    if cfg.get("modules_to_save"):
        problems.append(f"modules_to_save {cfg['modules_to_save']}")
    if cfg.get("use_dora"):
        problems.append("DoRA (use_dora)")
    if cfg.get("bias", "none") not in (None, "none"):
        problems.append(f"bias {cfg['bias']!r}")
    init = cfg.get("init_lora_weights", True)
    if isinstance(init, str) and init.lower() not in _LORA_INITS:
        problems.append(f"init_lora_weights {init!r}")
    for key in ("lora_bias", "layer_replication", "alora_invocation_tokens", "use_qalora", "use_bdlora"):
        if cfg.get(key):
            problems.append(key)
    if problems:
        raise UsageError(f"--adapter {adapter_dir}: vLLM cannot serve a LoRA with {', '.join(problems)}; "
                         "use --backend hf, which merges it")
    pattern = cfg.get("rank_pattern") or {}
    ranks = [cfg.get("r"), *(pattern.values() if isinstance(pattern, dict) else ())]
    if not all(isinstance(r, int) and r > 0 for r in ranks):
        raise ModelError(f"adapter config {Path(adapter_dir) / 'adapter_config.json'}: LoRA rank r / rank_pattern "
                         "must be positive integers")
    rank = max(ranks)
    size = next((size for size in LORA_RANKS if size >= rank), None)
    if size is None:
        raise UsageError(f"--adapter {adapter_dir}: LoRA rank {rank} is above vLLM's largest max_lora_rank "
                         f"({LORA_RANKS[-1]})")
    return size


def worker_start_method() -> str:
    """Ask vLLM to *spawn* its workers unless the user chose: with its default, fork, a worker started after
    anything in this process touched CUDA fails with "Cannot re-initialize CUDA in forked subprocess"
    (vllm#47446). vLLM 0.33 forces spawn itself only when ``torch.cuda.is_initialized()``
    (vllm/utils/system_utils.py _maybe_force_spawn), which a bare ``torch.cuda.is_available()`` (cuInit) does
    not set. The variable is read when the engine starts (vllm/envs.py is lazy until enable_envs_cache)."""
    current = os.environ.get("VLLM_WORKER_MULTIPROC_METHOD")
    if current:
        return f"VLLM_WORKER_MULTIPROC_METHOD={current} (set by the user)"
    os.environ["VLLM_WORKER_MULTIPROC_METHOD"] = "spawn"
    return ("VLLM_WORKER_MULTIPROC_METHOD=spawn (set by the harness: a forked worker cannot re-initialise CUDA, "
            "vllm#47446)")


class VLLMBackend:
    """Backend ``vllm``: prompt log-probabilities for lm-eval requests (or judge-mode statements)."""

    name: ClassVar[str] = "vllm"
    request_kind: RequestKind

    def __init__(self, config: BackendConfig) -> None:
        # option refusals come before vLLM is imported or anything is loaded
        self.options = options = VLLMOptions.parse(config.options)
        if config.threads is not None:
            raise UsageError("--threads does not apply to backend vllm (its engine sets its own CPU threads)")
        if config.max_length is not None and config.max_length < 2:
            raise UsageError(f"--max-length must be at least 2 (got {config.max_length})")
        request_kind_for(config.prompt)
        from harness.device import DTYPE_ALIASES

        dtype = DTYPE_ALIASES.get(config.dtype.strip().lower())  # "auto": vLLM resolves it from the model config
        if dtype is None:
            raise UsageError(f"--dtype {config.dtype!r}: choose auto, fp32, bf16 or fp16")
        visible = visible_device(config.device, options.tensor_parallel_size * options.pipeline_parallel_size)
        vllm = _import_vllm()

        from harness.backends.hf_causal import default_model
        from harness.backends.model_loading import resolve_base_and_adapter

        base, adapter_dir = resolve_base_and_adapter(config.model, config.adapter, default_model())
        rank = lora_rank(adapter_dir) if adapter_dir is not None else None

        notes: list[str] = [*base.notes, worker_start_method()]
        if visible is not None:
            os.environ["CUDA_VISIBLE_DEVICES"] = visible
            notes.append(f"CUDA_VISIBLE_DEVICES={visible} (set by the harness from --device {config.device}: "
                         "vLLM takes no device index)")
        elif os.environ.get("CUDA_VISIBLE_DEVICES") is not None:
            notes.append(f"CUDA_VISIBLE_DEVICES={os.environ['CUDA_VISIBLE_DEVICES']} (set by the user)")
        import torch

        # device_count() asks NVML and leaves CUDA uninitialised here; is_available() runs cudaGetDeviceCount, whose
        # cuInit poisons later forks (torch/cuda/__init__.py: is_available / device_count / _device_count_nvml).
        if torch.cuda.device_count() < 1:
            where = f" (CUDA_VISIBLE_DEVICES={visible})" if visible is not None else ""
            raise ModelError(f"backend 'vllm' needs a CUDA GPU, and NVML sees none{where} (use --backend hf on CPU)")

        self.config = config
        self.ref = config.model or default_model()
        self.base = base
        self.adapter_dir = adapter_dir
        self.device = f"cuda (vLLM; CUDA_VISIBLE_DEVICES={visible})" if visible is not None else "cuda (vLLM)"
        tokenizer = self._tokenizer()
        engine_args: dict[str, Any] = {
            "model": base.path, "tokenizer": base.path, "dtype": dtype, "seed": config.seed,
            "trust_remote_code": config.trust_remote_code, "tensor_parallel_size": options.tensor_parallel_size,
            "pipeline_parallel_size": options.pipeline_parallel_size,
            "enable_prefix_caching": options.enable_prefix_caching,
            "max_num_batched_tokens": options.max_num_batched_tokens, "enable_chunked_prefill": True,
        }
        if config.max_length is not None:
            engine_args["max_model_len"] = config.max_length
        if options.gpu_memory_utilization is not None:
            engine_args["gpu_memory_utilization"] = options.gpu_memory_utilization
        if options.distributed_executor_backend is not None:
            engine_args["distributed_executor_backend"] = options.distributed_executor_backend
        self.lora_request: Any = None
        if adapter_dir is not None:
            engine_args.update(enable_lora=True, max_lora_rank=rank)
            lora_cls = importlib.import_module("vllm.lora.request").LoRARequest
            self.lora_request = lora_cls(lora_name=Path(adapter_dir).name or "adapter", lora_int_id=1,
                                         lora_path=adapter_dir)
        try:
            self.llm = vllm.LLM(**engine_args)
        except Exception as err:  # engine start-up errors are long; keep the first line
            raise ModelError(f"vLLM could not start model {self.ref}: {one_line(err)}") from err
        self.engine_args = engine_args
        self.sampling = vllm.SamplingParams(temperature=0, prompt_logprobs=1, max_tokens=1, detokenize=False)
        engine = self.llm.llm_engine
        model_config = engine.model_config
        self.dtype = str(getattr(model_config, "dtype", dtype)).removeprefix("torch.")  # "auto" resolved by vLLM
        max_length = int(getattr(model_config, "max_model_len", None) or config.max_length or 2048)
        self.request_encoder = CausalRequestEncoder(tokenizer, prompt=config.prompt, add_bos=config.add_bos,
                                            chat_template=config.chat_template, max_length=max_length,
                                            ref=self.ref)
        self.request_kind = self.request_encoder.request_kind
        self.revision = base.revision
        if adapter_dir is not None:
            from harness.models.cache import fingerprint

            self.revision = f"{base.revision or 'unknown'}+adapter:{fingerprint(adapter_dir)}"
        notes.extend(self._engine_notes(vllm, rank))
        notes.extend(self.request_encoder.notes)
        self.notes = tuple(dict.fromkeys(notes))

    def _tokenizer(self) -> Any:
        """The tokenizer as the hf backend (and lm-eval) loads it: ``add_bos_token`` when --add-bos/--no-add-bos is
        given, since ``add_special_tokens=True`` alone adds no BOS to tokenizers that do not add one by default."""
        from transformers import AutoTokenizer

        from harness.backends.model_loading import load_cache_first

        kwargs: dict[str, Any] = {"trust_remote_code": bool(self.config.trust_remote_code)}
        if self.config.add_bos is not None:
            kwargs["add_bos_token"] = self.config.add_bos

        def load(local_only: bool) -> Any:
            return AutoTokenizer.from_pretrained(self.base.path, **kwargs, **({"local_files_only": True}
                                                                             if local_only else {}))

        tokenizer = load_cache_first(self.base, load, what="tokenizer", kind="causal")
        if self.config.chat_template and not getattr(tokenizer, "chat_template", None):
            raise UsageError(f"--chat-template: the tokenizer of model {self.ref} has no chat template")
        return tokenizer

    def _engine_notes(self, vllm: Any, rank: int | None) -> list[str]:
        """What the engine really runs with, read back from it where it says (its resolved configs)."""
        e = self.engine_args
        vllm_config = getattr(self.llm.llm_engine, "vllm_config", None)
        cache = getattr(vllm_config, "cache_config", None)
        scheduler = getattr(vllm_config, "scheduler_config", None)
        parallel = (f"vLLM {getattr(vllm, '__version__', '?')}: tensor_parallel_size {e['tensor_parallel_size']}, "
                    f"pipeline_parallel_size {e['pipeline_parallel_size']}")
        if "distributed_executor_backend" in e:
            parallel += f", distributed_executor_backend {e['distributed_executor_backend']}"
        batched = getattr(scheduler, "max_num_batched_tokens", e["max_num_batched_tokens"])
        chunked = getattr(scheduler, "enable_chunked_prefill", e["enable_chunked_prefill"])
        memory = e.get("gpu_memory_utilization")
        notes = [parallel,
                 f"max_num_batched_tokens {batched} (bounds the full-vocabulary prompt log-probabilities of a step), "
                 f"chunked prefill {'on' if chunked else 'off'}, gpu_memory_utilization "
                 f"{'vLLM default' if memory is None else f'{memory:g}'}"]
        # vllm/sampling_params.py (0.33.0) __post_init__: prompt_logprobs sets skip_reading_prefix_cache, so no
        # request of ours reads the prefix cache even when the engine keeps one
        engine_prefix = bool(getattr(cache, "enable_prefix_caching", e["enable_prefix_caching"]))
        reads = not getattr(self.sampling, "skip_reading_prefix_cache", True)
        if not engine_prefix:
            notes.append("prefix caching off (vLLM reads no prefix cache for prompt-logprob requests)")
        elif not reads:
            notes.append("prefix caching: enabled in the engine but not used (vLLM skips prefix-cache reads for "
                         "prompt-logprob requests)")
        else:
            notes.append("prefix caching on")
        if self.adapter_dir is not None:
            notes.append(f"LoRA adapter {self.adapter_dir} applied by vLLM per request (LoRARequest; enable_lora, "
                         f"max_lora_rank {rank}; not merged)")
        return notes

    @property
    def prompt_version(self) -> str | None:
        """The judge prompt when statements are judged (recorded with the run's prompt, as on backend hf)."""
        return self.request_encoder.prompt_version

    @property
    def numerics(self) -> Mapping[str, Any] | None:
        return None  # vLLM runs on CUDA only; its dtype is in the identity

    def info(self) -> ModelInfo:
        from harness.models.recipe import read_training_recipe

        return ModelInfo(backend=self.name, model=self.ref, path=self.base.path if self.base.is_local else None,
                         revision=self.revision, adapter=self.adapter_dir, dtype=self.dtype, device=self.device,
                         num_parameters=None, max_length=self.request_encoder.max_length, threads=None,
                         notes=self.notes,
                         base_model=self.base.preset or self.base.ref,
                         training=read_training_recipe(self.adapter_dir))

    def score(self, requests: Sequence[Request]) -> list[Score]:
        units = self.request_encoder.units(requests)
        windows = [vllm_window(u, self.request_encoder.max_length) for u in units]
        prompts = [{"prompt_token_ids": tokens} for tokens, _ in windows]
        outputs = self.llm.generate(prompts, self.sampling, use_tqdm=False, lora_request=self.lora_request)
        raw = [parse_prompt_logprobs(tokens, out.prompt_logprobs, ctxlen)
               for (tokens, ctxlen), out in zip(windows, outputs, strict=True)]
        # vllm_window keeps the last max_length - 1 tokens: a longer request lost its start (flagged, as hf does)
        truncated = [len(u.context) + len(u.continuation) > self.request_encoder.max_length - 1 for u in units]
        return self.request_encoder.scores(units, raw, truncated=truncated)

    def close(self) -> None:
        if hasattr(self, "llm"):
            del self.llm

"""Models ready to time: real weights through the backend `bench run` uses, or the true architecture with seeded
random weights from its config.json; configs, tokenizers (own or a stand-in) and the meta-device build."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from harness.efficiency.cost import model_cost, two_label
from harness.efficiency.memory import GB, available_memory_bytes
from harness.efficiency.profiles import DeviceProfile
from harness.efficiency.spec import MeasureSpec
from harness.errors import ModelError, UsageError

#: Stand-in tokenizers for random-weight models whose own tokenizer is not on this machine.
STAND_IN_TOKENIZER = {"encoder": "me5-small", "causal": "gemma3-270m"}
_STAND_IN_NOTE = {"encoder": "me5-small (XLM-R SentencePiece, 250k)", "causal": "gemma3-270m (Gemma 3, 262k)"}


@dataclass
class TimedModel:
    """A model ready to time: forward(batch of rows) does exactly what scoring does with the logits."""

    model: Any
    kind: str  # encoder | causal
    device: torch.device
    dtype: torch.dtype
    autocast: bool
    pad_id: int
    max_length: int
    info: dict[str, Any]
    tokenizer: Any | None = None
    tokenizer_label: str = "own"
    vocab_size: int | None = None  # fold stand-in token ids into this vocabulary
    config: Any = None
    notes: list[str] = field(default_factory=list)

    def inputs(self, rows: list[tuple[int, ...]], pad_to: int | None = None) -> dict[str, torch.Tensor]:
        width = max(pad_to or 0, max(len(r) for r in rows))
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, :len(row)] = torch.tensor(row, dtype=torch.long)
            mask[i, :len(row)] = 1
        return {"input_ids": ids.to(self.device), "attention_mask": mask.to(self.device)}

    def forward(self, inputs: dict[str, torch.Tensor]) -> None:
        """Encoder: logits -> softmax (P(True)); causal LM: full logits -> log_softmax over the vocabulary, as
        lm-eval 0.4.13's HFLM computes them for log-likelihood requests."""
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.autocast):
            logits = self.model(**inputs).logits
            if self.kind == "encoder":
                out = torch.softmax(logits.float(), dim=-1)[:, 1]
            else:
                out = torch.log_softmax(logits, dim=-1)
            del logits
            if self.device.type == "cpu":
                out.sum().item()  # force completion (CPU ops are synchronous; this only mirrors scoring)
            del out


def _kind_of(model_ref: str, config: Any | None) -> str:
    from harness.models.presets import PRESETS

    preset = PRESETS.get(model_ref)
    if preset is not None:
        return preset.kind
    architectures = [str(a) for a in (getattr(config, "architectures", None) or [])]
    if any(a.endswith(("ForCausalLM", "LMHeadModel", "ForConditionalGeneration")) for a in architectures):
        return "causal"
    return "encoder"


def model_config(model_ref: str) -> tuple[Any, str, str | None]:
    """(transformers config, kind, local path or None) without loading any weights."""
    from transformers import AutoConfig

    from harness.models.materialise import resolve_model
    from harness.models.presets import PRESETS
    from harness.models.shipped_config import load_shipped_config

    preset = PRESETS.get(model_ref)
    if preset is not None and preset.shipped_config:
        return load_shipped_config(preset), preset.kind, None
    resolved = resolve_model(model_ref)
    if not resolved.is_local:
        try:
            config = AutoConfig.from_pretrained(resolved.path)
        except Exception as err:
            raise ModelError(f"--models {model_ref}: no local config.json and none from the hub/cache "
                             f"({type(err).__name__})") from err
        return config, _kind_of(model_ref, config), None
    from harness.models.materialise import adapter_base_model, is_adapter_dir

    path = resolved.path
    if is_adapter_dir(path):  # an adapter (e.g. me5-small-st): the architecture is its base's
        base = adapter_base_model(path)
        if not base:
            raise ModelError(f"--models {model_ref}: adapter without a base model")
        base_resolved = resolve_model(base)
        path = base_resolved.path
    config = AutoConfig.from_pretrained(path, local_files_only=True)
    return config, _kind_of(model_ref, config), path


def max_length_of(config: Any, kind: str, model_ref: str) -> int:
    from harness.models.presets import PRESETS
    from harness.models.shipped_config import config_metadata

    preset = PRESETS.get(model_ref)
    if preset is not None and preset.max_length:
        return preset.max_length
    meta = config_metadata(config.to_dict())
    return meta["max_length"] or (512 if kind == "encoder" else 2048)


def tokenizer_for(model_ref: str, kind: str, path: str | None) -> tuple[Any, str]:
    from transformers import AutoTokenizer

    from harness.models.materialise import resolve_model
    from harness.models.quiet import hf_quiet

    if path is not None:
        try:
            with hf_quiet():
                return AutoTokenizer.from_pretrained(path, local_files_only=True), "own"
        except (OSError, ValueError):
            pass
    stand_in = STAND_IN_TOKENIZER[kind]
    with hf_quiet():
        tokenizer = AutoTokenizer.from_pretrained(resolve_model(stand_in).path, local_files_only=True)
    return tokenizer, f"stand-in: {_STAND_IN_NOTE[kind]} (the model's own tokenizer is not on this machine)"


def profile_dtype(requested: str, profile: DeviceProfile) -> torch.dtype:
    """The dtype an estimate assumes: --dtype, or auto = bf16 where the device has it (fp16 on a T4)."""
    from harness.device import DTYPE_ALIASES

    name = DTYPE_ALIASES.get(requested.strip().lower())
    if name is None:
        raise UsageError(f"--dtype {requested!r} is not valid; choose auto, fp32, bf16 or fp16")
    if name == "auto":
        name = "bfloat16" if profile.peak_for("bfloat16") else "float16"
    if not profile.peak_for(name):
        raise UsageError(f"--dtype {requested}: {profile.name} has no {name} peak in its profile")
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def attention_impl(model: Any) -> str:
    """The attention implementation transformers resolved for this model (recorded with every measurement)."""
    return str(getattr(model.config, "_attn_implementation", None) or "eager")


def load_real(spec: MeasureSpec) -> TimedModel:
    """The model exactly as `bench run` loads it (same backend class, dtype rules and notes), through the
    backend's declared efficiency hook (`Timeable.timing_target`)."""
    from harness.backends.base import BackendConfig, Timeable
    from harness.backends.registry import create

    cfg = BackendConfig(model=spec.model, dtype=spec.dtype, device=spec.device, threads=spec.threads,
                        seed=spec.seed)
    _, kind, _ = model_config(spec.model)
    name = "encoder" if kind == "encoder" else "hf"
    backend = create(name, cfg)
    if not isinstance(backend, Timeable):
        raise UsageError(f"backend {name!r} cannot be timed in this process (it has no timing_target)")
    target = backend.timing_target()
    info = asdict(backend.info())
    tokenizer = target.tokenizer
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    info["attention_implementation"] = attention_impl(target.model)
    return TimedModel(model=target.model, kind=target.kind, device=target.device, dtype=target.dtype,
                      autocast=target.autocast, pad_id=int(pad), max_length=target.max_length,
                      info=info, tokenizer=tokenizer, config=target.model.config,
                      notes=list(info.get("notes") or ()))


def check_weights_fit(spec: MeasureSpec) -> None:
    """Refuse, before allocating, random weights larger than the memory they would go to (no OOM-killed child)."""
    from harness.device import resolve_device, resolve_dtype

    config, kind, _ = model_config(spec.model)
    device = resolve_device(spec.device)
    dtype = resolve_dtype(spec.dtype, device)
    per_param = 4 if device.type == "cpu" or dtype == torch.float32 else 2
    needed = model_cost(config, kind).parameters * per_param
    if device.type == "cuda":
        room = float(torch.cuda.get_device_properties(device).total_memory)
        where = torch.cuda.get_device_name(device)
    else:
        room = float(available_memory_bytes() or 0) or math.inf
        where = "available RAM"
    if spec.memory_limit_bytes is not None:
        room = min(room, float(spec.memory_limit_bytes))
        where += " / --memory-limit"
    if needed > room:
        raise ModelError(f"{spec.model}: its weights take {needed / GB:.1f} GB, more than the {room / GB:.1f} GB of "
                         f"{where}; use --estimate with --gpu PROFILE for an analytic estimate")


def load_random(spec: MeasureSpec) -> TimedModel:
    """The true architecture from its config.json with seeded random weights: no download, same shapes."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    from harness.device import describe_device, dtype_name, resolve_device, resolve_dtype

    if spec.threads is not None:
        torch.set_num_threads(spec.threads)
    config, kind, path = model_config(spec.model)
    device = resolve_device(spec.device)
    dtype = resolve_dtype(spec.dtype, device)
    autocast = device.type == "cpu" and dtype == torch.bfloat16
    load_dtype = dtype if device.type == "cuda" else torch.float32
    torch.manual_seed(spec.seed)
    auto = AutoModelForCausalLM if kind == "causal" else AutoModelForSequenceClassification
    config = config if kind == "causal" else two_label(config)
    # no attn_implementation: transformers picks per architecture, as in `bench run`'s backends (sdpa where the
    # architecture supports it, else eager; Gemma 2 gets eager since sdpa drops its attention soft-capping:
    # transformers PR #32865, and Gemma2PreTrainedModel._supports_sdpa = False in 5.x)
    with torch.device(device):
        model = auto.from_config(config, dtype=load_dtype)
    model.eval()
    tokenizer, label = tokenizer_for(spec.model, kind, path)
    pad = getattr(config, "pad_token_id", None)
    vocab = int(getattr(config.get_text_config() if hasattr(config, "get_text_config") else config,
                        "vocab_size", 0) or 0)
    info = {"backend": "random-weights", "model": spec.model, "path": path, "revision": None, "adapter": None,
            "dtype": dtype_name(dtype), "device": describe_device(device),
            "num_parameters": sum(p.numel() for p in model.parameters()),
            "max_length": max_length_of(config, kind, spec.model), "threads": torch.get_num_threads(),
            "attention_implementation": attention_impl(model),
            "notes": [f"random weights (seed {spec.seed}) from the true architecture's config.json"]}
    return TimedModel(model=model, kind=kind, device=device, dtype=dtype, autocast=autocast,
                      pad_id=int(pad) if isinstance(pad, int) and 0 <= pad < vocab else 0,
                      max_length=int(info["max_length"]), info=info, tokenizer=tokenizer, tokenizer_label=label,
                      vocab_size=vocab if label != "own" else None, config=model.config,
                      notes=list(info["notes"]))

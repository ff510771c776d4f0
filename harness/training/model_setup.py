"""The model to statement-tune: a sequence classifier with a fresh 2-way head (index 1 = True), wrapped for
full fine-tuning, LoRA or QLoRA (4-bit nf4 base weights via bitsandbytes).

bitsandbytes and peft are imported only when LoRA / QLoRA is chosen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from harness.errors import ModelError, UsageError, one_line
from harness.models.materialise import ResolvedModel
from harness.models.quiet import hf_quiet, mute_bitsandbytes_kernel_notice

METHODS = ("full", "lora", "qlora")
#: modules kept whole (trained and saved) next to the adapters: the fresh head, and BERT's pooler that feeds it
HEAD_MODULES = ("classifier", "score", "pooler")
#: linear layers LoRA adapts when --lora-targets is not given, by the names transformers encoders use
_LORA_TARGET_CANDIDATES = ("query", "key", "value", "query_proj", "key_proj", "value_proj", "q_lin", "k_lin",
                           "v_lin", "dense")


@dataclass(frozen=True)
class LoraSettings:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    targets: tuple[str, ...] | None = None  # None: attention projections and dense layers of the encoder


def lora_targets(model: torch.nn.Module, requested: tuple[str, ...] | None) -> list[str]:
    """Module-name suffixes to adapt; never the head modules (they are trained whole)."""
    names = {name.rsplit(".", 1)[-1] for name, module in model.named_modules()
             if isinstance(module, torch.nn.Linear) and not any(h in name.split(".") for h in HEAD_MODULES)}
    if requested:
        missing = [t for t in requested if t not in names]
        if missing:
            raise UsageError(f"--lora-targets: no linear layer named {', '.join(missing)} in this model "
                             f"(linear layers: {', '.join(sorted(names))})")
        return list(requested)
    found = [t for t in _LORA_TARGET_CANDIDATES if t in names]
    if not found:
        raise UsageError("cannot pick LoRA targets for this model; give --lora-targets from "
                         + ", ".join(sorted(names)))
    return found


def _head_module_names(path: str, kwargs: dict[str, Any]) -> list[str]:
    """Full names of the head/pooler modules (bitsandbytes skips modules by full name, not by segment)."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    config = AutoConfig.from_pretrained(path, num_labels=2, **kwargs)
    with torch.device("meta"):
        skeleton = AutoModelForSequenceClassification.from_config(config)
    return [name for name, _ in skeleton.named_modules()
            if name and any(h in name.split(".") for h in HEAD_MODULES)]


def _quantization_config(compute_dtype: torch.dtype, skip: list[str]) -> Any:
    mute_bitsandbytes_kernel_notice()
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as err:
        raise UsageError("--method qlora needs bitsandbytes: pip install 'statement-bench[qlora]'") from err
    from transformers import BitsAndBytesConfig

    # the head and pooler stay in full precision: quantizing a freshly initialised 2-way head breaks training
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=False,
                              bnb_4bit_compute_dtype=compute_dtype, llm_int8_skip_modules=skip)


def load_for_training(base: ResolvedModel, method: str, lora: LoraSettings, *, device: torch.device,
                      compute_dtype: torch.dtype, seed: int) -> tuple[Any, Any, list[str]]:
    """(tokenizer, model ready for training, notes). The head is initialised from ``seed``."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if method not in METHODS:
        raise UsageError(f"--method {method!r}: choose {', '.join(METHODS)}")
    kwargs: dict[str, Any] = {"local_files_only": True} if base.is_local else {}
    extra: dict[str, Any] = {"num_labels": 2, "id2label": {0: "False", 1: "True"}, "label2id": {"False": 0, "True": 1}}
    notes: list[str] = []
    if method == "qlora":
        if device.type == "cpu":
            notes.append("QLoRA on CPU: bitsandbytes 4-bit nf4 CPU kernels (slow; meant for checking the path)")
        extra["quantization_config"] = _quantization_config(compute_dtype, _head_module_names(base.path, kwargs))
        extra["device_map"] = {"": str(device)}
    try:
        with hf_quiet():
            tokenizer = AutoTokenizer.from_pretrained(base.path, **kwargs)
            torch.manual_seed(seed)
            model = AutoModelForSequenceClassification.from_pretrained(
                base.path, dtype=torch.float32, ignore_mismatched_sizes=True, **extra, **kwargs)
    except (UsageError, ModelError):
        raise
    except Exception as err:
        raise ModelError(f"cannot load model {base.ref} for training from {base.path}: {one_line(err)}") from err
    if getattr(tokenizer, "pad_token_id", None) is None:
        raise ModelError(f"model {base.ref}: its tokenizer has no padding token")
    if method != "qlora":  # a quantized model was placed at load time (device_map)
        model.to(device)
    if method == "full":
        return tokenizer, model, notes
    mute_bitsandbytes_kernel_notice()
    from peft import LoraConfig, TaskType, get_peft_model

    targets = lora_targets(model, lora.targets)
    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    to_save = [m for m in HEAD_MODULES if m in present]
    config = LoraConfig(task_type=TaskType.SEQ_CLS, r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                        target_modules=targets, modules_to_save=list(to_save))  # peft extends this list
    if method == "qlora":
        from peft import prepare_model_for_kbit_training

        # no gradient checkpointing (it gains nothing at this size) and no model.eval(): on CPU, bitsandbytes
        # repacks 4-bit weights for its inference kernel when a module goes to eval mode, after which training
        # fails; evaluation during training switches only the dropout layers instead (see trainer._eval_mode)
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    torch.manual_seed(seed)
    with hf_quiet():
        model = get_peft_model(model, config)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    notes.append(f"{method}: r={lora.r} alpha={lora.alpha} dropout={lora.dropout} on {', '.join(targets)}; "
                 f"trained whole: {', '.join(to_save)}; {trainable:,} of {total:,} parameters trainable")
    return tokenizer, model, notes

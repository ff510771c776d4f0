"""What a model costs per token, read from its config: parameters, FLOPs per token, weight bytes, activation bytes.

The architecture is built on the ``meta`` device (no memory, no weights), so every number comes from the true
module shapes of any transformers config, not from a per-family formula:

- FLOPs per token = 2 x (weights of every ``nn.Linear`` the token passes through: projections, MLP, and the
  LM head for a causal LM, which lm-eval applies to every position) + attention scores and mixing
  (4 x layers x attended positions x heads x head dim; a causal token attends to (T+1)/2 positions on average,
  an encoder token to T; DeBERTa's disentangled c2p/p2c terms add the same over 2 x its position span).
- Activation bytes per row are the peak live tensors of one layer in inference mode (residual stream, q/k/v,
  attention scores where the implementation materialises them, MLP intermediates), or of the LM head (full
  logits, and lm-eval's log_softmax copy), whichever is larger. Used by the analytic estimate
  (`harness.efficiency.estimate`), which is checked against measurements where both exist.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from typing import Any

from harness.errors import ModelError, one_line

#: Attention implementations that never materialise the [heads, T, T] score matrix on a GPU.
FUSED_ATTENTION = frozenset({"sdpa", "flash_attention_2", "flash_attention_3", "flex_attention"})


@dataclass(frozen=True)
class ModelCost:
    """Shapes that decide compute and memory; `linear_parameters` counts a tied LM head again (it is applied)."""

    kind: str  # "encoder" | "causal"
    model_type: str
    parameters: int  # unique parameters (weights in memory)
    linear_parameters: int  # weights of nn.Linear modules a token passes through (2 FLOPs each)
    head_parameters: int  # the LM head's share of linear_parameters (0 for encoders)
    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    gated_mlp: bool
    relative_span: int  # DeBERTa-v2 relative attention: positions on each side (0 = none)
    sliding_window: int | None  # Gemma-2 style local layers (None = all global)
    logit_softcap: bool  # Gemma-2: tanh soft-capping makes extra copies of the logits

    def attended(self, seq_len: int) -> float:
        """Average positions one token attends to."""
        span = float(seq_len) if self.kind == "encoder" else (seq_len + 1) / 2
        if self.sliding_window:
            span = min(span, float(self.sliding_window))
        return span

    def flops_per_token(self, seq_len: int) -> float:
        """Forward FLOPs per token of a row of `seq_len` tokens (multiply-add = 2 FLOPs)."""
        attention = 4.0 * self.layers * self.attended(seq_len) * self.heads * self.head_dim
        if self.relative_span:
            attention += 4.0 * self.layers * min(2 * self.relative_span, 2 * seq_len) * self.heads * self.head_dim
        return 2.0 * self.linear_parameters + attention

    def weight_bytes(self, bytes_per_param: int) -> int:
        return self.parameters * bytes_per_param

    def activation_bytes_per_row(self, seq_len: int, bytes_per_value: int, attention: str,
                                 fused_attention_ok: bool = True) -> float:
        """Peak live activation bytes one row of `seq_len` tokens adds during a forward (inference mode)."""
        t, b = float(seq_len), float(bytes_per_value)
        residual = 2 * t * self.hidden * b  # the layer's input and its output
        qkv = t * (self.heads + 2 * self.kv_heads) * self.head_dim * b + t * self.heads * self.head_dim * b
        scores = 0.0
        if not (attention in FUSED_ATTENTION and fused_attention_ok):
            scores = 2 * self.heads * t * t * b + self.heads * t * t * 4  # scores, probs, fp32 softmax
        if self.relative_span:
            scores += 2 * self.heads * t * min(2 * self.relative_span, 2 * t) * b  # c2p / p2c
        mlp = (3 if self.gated_mlp else 2) * t * self.intermediate * b
        layer = residual + max(qkv + scores, mlp)
        head = 0.0
        if self.kind == "causal":
            copies = 3 if self.logit_softcap else 2  # logits and log_softmax (+ the soft-cap's temporary)
            head = t * self.hidden * b + copies * t * self.vocab * b
        return max(layer, head)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def two_label(config: Any) -> Any:
    """A copy of an encoder config with the statement scorer's 2-way head (index 1 = True)."""
    import copy

    config = copy.deepcopy(config)
    config.num_labels = 2
    return config


def build_on_meta(config: Any, kind: str) -> Any:
    """The architecture on the meta device (no memory, no weights) with the attention transformers picks for it,
    as `bench run` loads it (sdpa where the architecture supports it, eager for e.g. Gemma 2, whose logit
    soft-capping sdpa drops; an estimate's activation memory depends on it); an unbuildable config is a one-line
    ModelError."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    from harness.models.quiet import hf_quiet

    auto = AutoModelForCausalLM if kind == "causal" else AutoModelForSequenceClassification
    config = config if kind == "causal" else two_label(config)
    try:
        with hf_quiet(), warnings.catch_warnings(), torch.device("meta"):
            warnings.simplefilter("ignore")
            return auto.from_config(config)
    except Exception as err:  # transformers raises many types for an unbuildable config
        raise ModelError(f"cannot build model_type {getattr(config, 'model_type', '?')!r} from its config: "
                         f"{one_line(err)}") from err


def model_cost(config: Any, kind: str, model: Any = None) -> ModelCost:
    """The cost of a transformers config (`kind` "encoder" or "causal"); pass `model` to count an existing one."""
    import torch

    if model is None:
        model = build_on_meta(config, kind)
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    linear = 0
    head = 0
    gated = False
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            linear += module.weight.numel()
            if kind == "causal" and name.rsplit(".", 1)[-1] in ("lm_head", "embed_out", "output"):
                head += module.weight.numel()
        if name.endswith("gate_proj") or name.endswith("gate_up_proj"):
            gated = True
    unique = sum(p.numel() for p in model.parameters())  # parameters() yields tied tensors once

    def get(*keys: str, default: int = 0) -> int:
        for key in keys:
            value = getattr(text_config, key, None)
            if isinstance(value, int) and not isinstance(value, bool):
                return value
        return default

    hidden = get("hidden_size", "d_model", "n_embd")
    heads = get("num_attention_heads", "n_head")
    head_dim = get("head_dim", default=hidden // heads if heads else 0)
    relative = 0
    if getattr(text_config, "relative_attention", False):
        buckets = get("position_buckets")
        relative = buckets if buckets > 0 else get("max_relative_positions", "max_position_embeddings")
    window = getattr(text_config, "sliding_window", None)
    layer_types = getattr(text_config, "layer_types", None) or ()
    if window and layer_types and "full_attention" in layer_types:
        window = None  # mixed local/global layers: the global ones attend to everything
    return ModelCost(
        kind=kind, model_type=str(getattr(config, "model_type", "?")), parameters=int(unique),
        linear_parameters=int(linear), head_parameters=int(head), layers=get("num_hidden_layers", "n_layer"),
        hidden=hidden, intermediate=get("intermediate_size", "ffn_dim", "n_inner", default=4 * hidden),
        heads=heads, kv_heads=get("num_key_value_heads", default=heads), head_dim=head_dim,
        vocab=get("vocab_size"), gated_mlp=gated, relative_span=relative,
        sliding_window=int(window) if isinstance(window, int) and window > 0 else None,
        logit_softcap=bool(getattr(text_config, "final_logit_softcapping", None)))

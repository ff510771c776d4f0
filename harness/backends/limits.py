"""A model's input limit in tokens (one resolver for the encoder and hf backends), and --max-length checks."""

from __future__ import annotations

from typing import Any, Literal

from harness.errors import UsageError

#: Model types whose position ids start at padding_idx + 1 (RoBERTa-style), so two positions are unusable.
POSITION_OFFSET_TYPES = frozenset({
    "roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "data2vec-text", "xmod", "longformer",
    "roberta-prelayernorm", "mpnet", "ibert", "luke",
})
#: lm-eval's resolve_max_length: these config attributes (first one set), then the tokenizer, then a default.
SEQLEN_ATTRS = ("n_positions", "max_position_embeddings", "n_ctx")
#: transformers' "no limit" tokenizer model_max_length (int(1e30)); encoders ignore any limit above the sane one
TOKENIZER_INFINITY = 1000000000000000019884624838656
SANE_TOKENIZER_LIMIT = 100_000
DEFAULT_MAX_LENGTH = {"encoder": 512, "causal": 2048}

Kind = Literal["encoder", "causal"]


def config_limit(config: Any, kind: Kind) -> int | None:
    """Positions the config allows (RoBERTa-style tables less their 2 reserved rows), or None when it states none.
    A causal model reads a multimodal config's ``text_config`` and the first of `SEQLEN_ATTRS` set (lm-eval); an
    encoder reads ``max_position_embeddings``, a positive int."""
    if kind == "causal":
        cfg = getattr(config, "text_config", None) or config
        value = next((v for v in (getattr(cfg, a, None) for a in SEQLEN_ATTRS) if v is not None), None)
        positions = int(value) if value is not None else None
    else:
        cfg = config
        value = getattr(cfg, "max_position_embeddings", None)
        positions = value if isinstance(value, int) and value > 0 else None
    if positions is None:
        return None
    return positions - (2 if getattr(cfg, "model_type", "") in POSITION_OFFSET_TYPES else 0)


def model_max_length(config: Any, tokenizer: Any, kind: Kind) -> int:
    """The model's input limit. Encoder: the smaller of the config's positions and a sane tokenizer limit
    (default 512). Causal (lm-eval's resolve_max_length): the config's positions, else the tokenizer's limit
    unless unbounded, else 2048."""
    from_config = config_limit(config, kind)
    tok_limit = getattr(tokenizer, "model_max_length", None)
    if kind == "causal":
        if from_config is not None:
            return from_config
        return int(tok_limit) if tok_limit is not None and tok_limit != TOKENIZER_INFINITY else DEFAULT_MAX_LENGTH[kind]
    limits = [from_config] if from_config is not None else []
    if isinstance(tok_limit, int) and 0 < tok_limit < SANE_TOKENIZER_LIMIT:
        limits.append(tok_limit)
    return min(limits) if limits else DEFAULT_MAX_LENGTH[kind]


def resolve_max_length(config: Any, tokenizer: Any, kind: Kind, requested: int | None, ref: str) -> int:
    """`requested` (--max-length) if given and within the model's limit (UsageError beyond it), else the limit."""
    limit = model_max_length(config, tokenizer, kind)
    if requested is None:
        return limit
    if requested > limit:
        raise UsageError(f"--max-length {requested} exceeds the limit of model {ref} ({limit} tokens)")
    return requested

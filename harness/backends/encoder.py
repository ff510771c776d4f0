"""Statement scorer: an encoder with a 2-way classification head; score = P(True) = softmax(logits)[1].

Each statement is one single-segment string (no sentence-pair encoding), as in Statement-Tuning. Inputs are
tokenised without truncation first (to report their true length), cut to the model's limit only when longer
(reported as ``Score.truncated``), sorted by length and batched with per-batch (dynamic) padding.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import torch

from harness.backends.base import BackendConfig
from harness.backends.limits import resolve_max_length
from harness.backends.model_loading import (
    TransformersBackend,
    load_cache_first,
    load_peft_adapter,
    model_revision,
    resolve_base_and_adapter,
)
from harness.backends.options import EncoderOptions
from harness.batching import Collator
from harness.core import Request, RequestKind, Score, StatementRequest
from harness.device import is_out_of_memory, release_memory
from harness.errors import ModelError, ScoreError, one_line
from harness.models.materialise import ResolvedModel, read_adapter_config
from harness.models.presets import DEFAULT_ENCODER, DEFAULT_ENCODER_BASE, UNTRAINED_HEAD_NOTE, ModelKind

_HEAD_KEYS = ("classifier", "score", "pooler", "sequence_summary")
_CLASSIFIER_KEYS = ("classifier", "score", "sequence_summary")  # the head proper (the pooler only feeds it)
_UNTRAINED_HEAD = "classification head newly initialised (untrained): scores are chance-level"


def _is_classifier(name: str) -> bool:
    """A weight or module name of the classification head itself."""
    return any(k in name for k in _CLASSIFIER_KEYS)


class EncoderBackend(TransformersBackend):
    """Backend ``encoder``: a sequence classifier (preset, local dir or hub id; optional peft adapter)."""

    name: ClassVar[str] = "encoder"
    kind: ClassVar[ModelKind] = "encoder"
    request_kind: RequestKind = "statement"

    def __init__(self, config: BackendConfig) -> None:
        self._configure(config)
        self.options = EncoderOptions.parse(config.options)
        self.ref = config.model or DEFAULT_ENCODER
        notes: list[str] = []

        base, adapter_dir = resolve_base_and_adapter(
            config.model, config.adapter, DEFAULT_ENCODER_BASE if config.adapter else DEFAULT_ENCODER)
        self.base = base
        self.adapter_dir = adapter_dir
        self.tokenizer, self.model, load_notes = self._load(base, adapter_dir)
        notes.extend(load_notes)
        self.model.eval()
        self.max_length = self._max_length()
        notes.extend(self._precision_notes())
        self.notes = tuple(dict.fromkeys(notes))  # de-duplicated, in order
        self.revision = model_revision(base, self.model, adapter_dir)
        self.num_parameters = sum(p.numel() for p in self.model.parameters())
        self._closed = False

    # -- resolution / loading --------------------------------------------------------------------------------

    def _from_pretrained(self, base: ResolvedModel, local_only: bool) -> tuple[Any, Any, dict[str, Any]]:
        from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

        kwargs: dict[str, Any] = {"local_files_only": True} if local_only else {}
        hf_config = AutoConfig.from_pretrained(base.path, **kwargs)
        num_labels = int(getattr(hf_config, "num_labels", 2))
        architectures = list(getattr(hf_config, "architectures", None) or [])
        has_head = any(a.endswith("ForSequenceClassification") for a in architectures)
        if num_labels != 2 and has_head:
            labels = ", ".join(str(v) for v in (getattr(hf_config, "id2label", None) or {}).values())
            raise ModelError(f"model {base.ref} has a {num_labels}-label classification head ({labels}); "
                             "statement scoring needs 2 labels (0 = False, 1 = True)")
        extra: dict[str, Any] = {}
        if not has_head:
            extra = {"id2label": {0: "False", 1: "True"}, "label2id": {"False": 0, "True": 1}}
        tokenizer = AutoTokenizer.from_pretrained(base.path, **kwargs)
        torch.manual_seed(self.config.seed)  # a newly initialised head is then the same on every run
        model, loading = AutoModelForSequenceClassification.from_pretrained(
            base.path, num_labels=2, dtype=self.load_dtype, output_loading_info=True, **extra, **kwargs)
        return tokenizer, model, loading

    def _load(self, base: ResolvedModel, adapter_dir: str | None) -> tuple[Any, Any, list[str]]:
        """(tokenizer, model, notes): the base's notes, then what loading found about the head."""
        notes: list[str] = []
        tokenizer, model, loading = load_cache_first(
            base, lambda local_only: self._from_pretrained(base, local_only), what="model", kind="encoder")
        if tokenizer.pad_token_id is None:
            raise ModelError(f"model {base.ref}: its tokenizer has no padding token")
        tokenizer.padding_side = "right"
        missing = [str(k) for k in loading.get("missing_keys", ()) if any(h in str(k) for h in _HEAD_KEYS)]
        head_from_adapter: set[str] = set()
        if adapter_dir is not None:
            model, head_from_adapter = self._load_adapter(model, adapter_dir)
            notes.append(f"peft adapter {adapter_dir}")
        untrained = [k for k in missing if not any(m in k for m in head_from_adapter)]
        if any(_is_classifier(k) for k in untrained):
            notes.append(f"{_UNTRAINED_HEAD} (seed {self.config.seed})")
        elif untrained:  # e.g. only the pooler
            modules = sorted({k.rsplit(".", 2)[0] for k in untrained})
            notes.append(f"{', '.join(modules)} newly initialised (untrained, seed {self.config.seed})")
        if head_from_adapter:
            saved = ", ".join(sorted(head_from_adapter))
            notes.append(f"classification head loaded from the adapter ({saved})")
        label1 = str((getattr(model.config, "id2label", None) or {}).get(1, "True"))
        if label1.lower() not in ("true", "label_1", "1", "yes", "entailment"):
            notes.append(f"label 1 of this checkpoint is {label1!r}: P(True) is read from it "
                         "(check the label order)")
        model.to(self.device)
        # the base preset's "head untrained" note is void when the adapter brings a trained head
        trained_head = any(_is_classifier(m) for m in head_from_adapter)
        base_notes = [n for n in base.notes if not (trained_head and n == UNTRAINED_HEAD_NOTE)]
        return tokenizer, model, base_notes + notes

    def _load_adapter(self, model: Any, adapter_dir: str) -> tuple[Any, set[str]]:
        """The adapter applied (not merged: its head may be a saved module), and the head modules it saved."""
        peft_model = load_peft_adapter(model, adapter_dir)
        saved = {str(m) for m in (read_adapter_config(adapter_dir).get("modules_to_save") or ())}
        present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
        return peft_model, saved & present

    def _max_length(self) -> int:
        return resolve_max_length(self.model.config, self.tokenizer, "encoder", self.config.max_length, self.ref)

    # -- Backend protocol ------------------------------------------------------------------------------------

    def _encode(self, texts: list[str]) -> tuple[list[dict[str, list[int]]], list[int]]:
        """Per text: the (possibly truncated) encoding and the untruncated token count."""
        full = self.tokenizer(texts, add_special_tokens=True, truncation=False, verbose=False)
        keys = [k for k in ("input_ids", "token_type_ids", "attention_mask") if k in full]
        encodings = [{k: list(full[k][i]) for k in keys} for i in range(len(texts))]
        lengths = [len(e["input_ids"]) for e in encodings]
        long = [i for i, n in enumerate(lengths) if n > self.max_length]
        if long:
            cut = self.tokenizer([texts[i] for i in long], add_special_tokens=True, truncation=True,
                                 max_length=self.max_length, verbose=False)
            for j, i in enumerate(long):
                encodings[i] = {k: list(cut[k][j]) for k in keys}
        return encodings, lengths

    def _forward(self, batch: list[dict[str, list[int]]]) -> torch.Tensor:
        width = max(len(e["input_ids"]) for e in batch)
        pad_id = int(self.tokenizer.pad_token_id)
        ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        types = torch.zeros((len(batch), width), dtype=torch.long) if "token_type_ids" in batch[0] else None
        for row, enc in enumerate(batch):
            n = len(enc["input_ids"])
            ids[row, :n] = torch.tensor(enc["input_ids"], dtype=torch.long)
            mask[row, :n] = 1
            if types is not None:
                types[row, :n] = torch.tensor(enc["token_type_ids"], dtype=torch.long)
        inputs = {"input_ids": ids.to(self.device), "attention_mask": mask.to(self.device)}
        if types is not None:
            inputs["token_type_ids"] = types.to(self.device)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self._autocast):
            logits = self.model(**inputs).logits
        if logits.shape[-1] != 2:
            raise ScoreError(f"encoder {self.ref} returned {logits.shape[-1]} logits per statement, "
                             "expected 2")
        return torch.softmax(logits.float(), dim=-1)[:, 1].cpu()

    def score(self, requests: Sequence[Request]) -> list[Score]:
        if self._closed:
            raise ScoreError(f"encoder backend for {self.ref} was closed")
        texts: list[str] = []
        for r in requests:
            if not isinstance(r, StatementRequest):
                raise ScoreError(f"encoder backend scores statements only; "
                                 f"got a {r.kind} request ({r.example_id})")
            texts.append(r.text)
        if not texts:
            return []
        encodings, lengths = self._encode(texts)
        # longest first (stable: equal lengths keep input order), so each batch pads little
        collator = Collator([len(e["input_ids"]) for e in encodings])
        done: list[tuple[list[int], list[float]]] = []
        start = 0  # statements scored so far, in sorted order
        pending = collator.batches(self.batch_size)
        with torch.inference_mode():
            while pending:
                idx = pending.pop(0)
                try:
                    probs = self._forward([encodings[i] for i in idx]).tolist()
                except RuntimeError as err:  # torch.OutOfMemoryError, AcceleratorError, cuBLAS alloc failures
                    if not is_out_of_memory(err):
                        raise
                    if self.device.type != "cuda" or len(idx) == 1:
                        raise ScoreError(f"out of memory scoring {len(idx)} statement(s) on {self.device}: "
                                         f"{one_line(err)}") from err
                else:
                    done.append((idx, [float(p) for p in probs]))
                    start += len(idx)
                    continue
                # out of the except block, so the failed forward's tensors are gone and the cache can be emptied;
                # then retry the same statements at half the batch (kept for the rest of the run, and recorded)
                release_memory(self.device)
                self.batch_size = max(1, len(idx) // 2)
                self.notes = (*self.notes, f"CUDA out of memory at batch {len(idx)}: continued at batch "
                                           f"{self.batch_size}")
                pending = collator.batches(self.batch_size, start=start)
        values = collator.restore(done)
        bad = [i for i, v in enumerate(values) if not math.isfinite(v)]
        if bad:
            raise ScoreError(f"encoder returned NaN/inf scores for {len(bad)} statement(s), "
                             f"e.g. {texts[bad[0]][:60]!r}")
        return [Score(value=v, truncated=n > self.max_length, n_tokens=n)
                for v, n in zip(values, lengths, strict=True)]

"""Causal LM backend ``hf``: lm-eval-style log-likelihoods (or a True/False judge) with transformers.

Requests are tokenised exactly as lm-evaluation-harness 0.4.13's ``HFLM`` does (`CausalRequestEncoder`), so
``acc`` / ``acc_norm`` are comparable with lm-eval; only the compute is organised differently, and each trick is
checked against the plain computation once at load time (and switched off on any mismatch):

- the LM head sees only the positions that predict a continuation token (``logits_to_keep``), log-softmax in fp32;
- equal inputs, and inputs that are prefixes of another, are run once;
- candidates sharing a context are packed into one row (4D mask, restarted position ids);
- rows are length-sorted into batches under a token budget (`harness.batching.Collator`); on CUDA an
  out-of-memory batch is halved and retried;
- like lm-eval, inputs longer than the window are cut from the left and flagged ``truncated``.

``--prompt statements`` judges statements (P(True) from " True" vs " False"); ``--chat-template`` wraps contexts
as lm-eval's ``--apply_chat_template`` does. On CPU the weights stay fp32 (bf16 as autocast); on CUDA they load
in the resolved dtype.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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
from harness.backends.options import HFOptions
from harness.batching import Collator
from harness.core import Request, Score
from harness.device import is_out_of_memory, release_memory
from harness.errors import ModelError, ScoreError, UsageError, one_line
from harness.models import presets
from harness.models.materialise import ResolvedModel
from harness.models.presets import ModelKind
from harness.prompts.causal_requests import CausalRequestEncoder
from harness.prompts.judge import JUDGE_FALSE, JUDGE_PROMPT_VERSION, JUDGE_TEMPLATE, JUDGE_TRUE

PROMPT_MODES = {"default": "loglikelihood", "lm-eval": "loglikelihood", "statements": "statement"}
#: logits are projected in chunks of at most this many float32 values (rows x vocab), i.e. 256 MiB
_LOGIT_CHUNK_ELEMENTS = 1 << 26
_DEFAULT_TOKEN_BUDGET = {"cpu": 4096, "cuda": 65536}
#: auto batch: rows shorter than this fraction of the batch's longest row start a new batch (padding <= 20%)
_MIN_FILL = 0.8
_CAUSAL_SUFFIXES = ("ForCausalLM", "LMHeadModel", "ForConditionalGeneration")
#: packing: inputs sharing at least this many leading tokens share one row (up to this many inputs per row,
#: and rows of at most _PACK_MAX_LENGTH tokens, and never longer than a sliding attention window)
_PACK_MIN_SHARED = 8
_PACK_MAX_MEMBERS = 16
_PACK_MAX_LENGTH = 1024
#: load-time checks: log-probs compared in the packing check reach about this magnitude (tail of the vocab)
_LOGPROB_MAGNITUDE = 32.0


@dataclass(frozen=True)
class _Tolerance:
    """How far the load-time checks let two computations of the same logits differ."""

    head: float  # relative to max |logit| + 1 (`_check_head`)
    pack_max: float  # absolute, on float32 log-probs (`_check_packing`)
    pack_mean: float


def _check_tolerances(dtype: torch.dtype) -> _Tolerance:
    """fp32 weights give the same numbers (1e-3, as always). Half-precision weights round every value to
    ``eps`` (bf16 2**-7, fp16 2**-10) relative, so the floor 1e-3 is below one bf16 ulp: the head check allows
    4 ulps relative (both sides rounded, plus a different matmul shape); the packing check, whose attention
    kernel differs in every layer, 12 ulps (max) and 0.4 ulp (mean) at a log-prob of magnitude 32, i.e. bf16
    3.0 / 0.1 (the values used before) and fp16 8x less. A wrong mask or position moves log-probs far more."""
    eps = torch.finfo(dtype).eps
    return _Tolerance(head=max(1e-3, 4 * eps), pack_max=max(1e-3, 12 * _LOGPROB_MAGNITUDE * eps),
                      pack_mean=max(1e-3, 0.4 * _LOGPROB_MAGNITUDE * eps))


def default_model() -> str:
    """The default causal-LM preset (``harness.models.presets.DEFAULT_CAUSAL``)."""
    return presets.DEFAULT_CAUSAL


Tokens = tuple[int, ...]
_Key = tuple[Tokens, int, int]  # (model input, position, target token)


@dataclass(frozen=True)
class _Unit:
    """One (context, continuation) pair in tokens, cut to the model's window."""

    inp: tuple[int, ...]  # model input: window[:-1]
    targets: tuple[int, ...]  # scored tokens: the last len(targets) tokens of the window
    n_cont: int  # continuation tokens before any cut
    truncated: bool


def _common_prefix(a: Tokens, b: Tokens, limit: int) -> int:
    """Number of equal leading tokens of `a` and `b`, at most `limit`."""
    n = min(len(a), len(b), limit)
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class _Row:
    """One row of a batch: `members` (model inputs) packed after their shared first `prefix` tokens.

    Layout: prefix, then each member's remaining tokens; positions restart at `prefix` for every member, and
    segment ids (0 = shared prefix, k + 1 = member k) drive the attention mask. One member = a plain row."""

    def __init__(self, members: list[Tokens], prefix: int) -> None:
        if len(members) == 1:
            prefix = len(members[0])
        self.members = members
        self.prefix = prefix
        tokens = list(members[0][:prefix])
        positions = list(range(prefix))
        segments = [0] * prefix
        self.offset: dict[Tokens, int] = {}
        for k, member in enumerate(members):
            self.offset[member] = len(tokens) - prefix
            tokens.extend(member[prefix:])
            positions.extend(range(prefix, len(member)))
            segments.extend([k + 1] * (len(member) - prefix))
        self.tokens, self.positions, self.segments = tokens, positions, segments
        self.length = len(tokens)

    def index(self, member: Tokens, pos: int) -> int:
        """Index in this row of the member's own position `pos`."""
        return pos if pos < self.prefix else pos + self.offset[member]


class _Batch:
    """Right-padded tensors for some rows, and where each member's kept positions land in the logits."""

    def __init__(self, rows: list[_Row], keep: dict[Tokens, list[int]], pad: int, device: torch.device) -> None:
        width = max(r.length for r in rows)
        size = (len(rows), width)
        self.packed = any(len(r.members) > 1 for r in rows)
        ids = torch.full(size, pad, dtype=torch.long)
        mask = torch.zeros(size, dtype=torch.long)
        positions = torch.zeros(size, dtype=torch.long)
        segments = torch.full(size, -1, dtype=torch.long)
        kept = torch.zeros(size, dtype=torch.bool)
        self._where: dict[Tokens, tuple[_Row, dict[int, int]]] = {}
        base = 0
        for b, row in enumerate(rows):
            n = row.length
            ids[b, :n] = torch.tensor(row.tokens, dtype=torch.long)
            mask[b, :n] = 1
            positions[b, :n] = torch.tensor(row.positions, dtype=torch.long)
            segments[b, :n] = torch.tensor(row.segments, dtype=torch.long)
            idx = sorted({row.index(m, p) for m in row.members for p in keep[m]})
            kept[b, idx] = True
            where = {j: base + r for r, j in enumerate(idx)}  # logits follow `kept` in row-major order
            for m in row.members:
                self._where[m] = (row, where)
            base += len(idx)
        self.ids, self.mask, self.keep = ids.to(device), mask.to(device), kept.to(device)
        self.positions, self.segments = positions.to(device), segments.to(device)

    def logit_rows(self, member: Tokens, positions: list[int]) -> list[int]:
        row, where = self._where[member]
        return [where[row.index(member, p)] for p in positions]


class HFCausalBackend(TransformersBackend):
    """Backend ``hf``: a transformers causal LM (preset, local dir or hub id; optional peft adapter, merged)."""

    name: ClassVar[str] = "hf"
    kind: ClassVar[ModelKind] = "causal"

    def __init__(self, config: BackendConfig) -> None:
        mode = PROMPT_MODES.get(config.prompt)
        if mode is None:
            raise UsageError(f"--prompt {config.prompt!r} is not valid for backend hf; choose lm-eval "
                             "(log-likelihoods, the default) or statements (True/False judge)")
        self.request_kind = "loglikelihood" if mode == "loglikelihood" else "statement"
        self.options = HFOptions.parse(config.options)
        self._configure(config)
        self.auto_batch = self.options.auto_batch
        self.ref = config.model or default_model()
        self.token_budget = self.options.token_budget or _DEFAULT_TOKEN_BUDGET.get(self.device.type, 4096)
        self._retry_oom = self.device.type == "cuda"  # halve the batch on CUDA out-of-memory
        self._cap_rows = self.device.type != "cuda"  # auto batch: config.batch_size caps the rows on CPU only
        notes: list[str] = []

        base, adapter_dir = resolve_base_and_adapter(config.model, config.adapter, default_model())
        self.base = base
        self.adapter_dir = adapter_dir
        notes.extend(base.notes)
        self.tokenizer, self.model, load_notes = self._load(base, adapter_dir)
        notes.extend(load_notes)
        self.model.eval()
        self.max_length = self._max_length()
        self.add_bos = config.add_bos
        self.chat_template = bool(config.chat_template)
        # lm-eval's tokenisation, chat wrapping and judge pairs: shared with the vLLM backend
        self.request_encoder = CausalRequestEncoder(self.tokenizer, prompt=config.prompt, add_bos=config.add_bos,
                                            chat_template=self.chat_template, max_length=self.max_length,
                                            ref=self.ref)
        self.prefix_token_id = self.request_encoder.prefix_token_id
        self._prefix_text = self.request_encoder._prefix_text
        self._head_mode = self._check_head()
        self._pack_limit = self._packing_limit()
        self._packing = False
        self._packing_refusal: str | None = None
        self._packing = self._check_packing()

        if mode == "loglikelihood":
            notes.append("prompt: lm-eval 0.4.13 log-likelihood requests (acc and acc_norm)")
        else:
            notes.append(f"prompt: statements judged True/False ({JUDGE_PROMPT_VERSION}: {JUDGE_TEMPLATE!r} + "
                         f"{JUDGE_TRUE!r}/{JUDGE_FALSE!r}; score = P(True) normalised over the two answers)")
        notes.append("chat template: on (user turn + generation prompt; target delimiter dropped, as lm-eval)"
                     if self.chat_template else "chat template: off")
        bos_default = "tokenizer default" if self.add_bos is None else ("forced on" if self.add_bos else "forced off")
        notes.append(f"add_bos: {bos_default}; empty contexts start with token {self.prefix_token_id} "
                     f"({self._prefix_text!r})")
        notes.append("packing: inputs sharing a prefix share one row (4D mask), checked at load time"
                     if self._packing else "packing: off" + (f" (the probe failed: {self._packing_refusal})"
                                                            if self._packing_refusal else ""))
        if self._head_mode != "logits_to_keep":
            notes.append(f"continuation logits via {self._head_mode}")
        notes.extend(self._precision_notes())
        rows_cap = f" and <= {self.batch_size} rows" if self._cap_rows else ""
        batching = (f"auto batch: <= {self.token_budget} tokens{rows_cap} per batch"
                    if self.auto_batch else f"fixed batch size {self.batch_size}")
        notes.append(batching)
        self.notes = tuple(dict.fromkeys(notes))
        self.revision = model_revision(base, self.model, adapter_dir)
        self.num_parameters = sum(p.numel() for p in self.model.parameters())
        self._closed = False

    # -- resolution / loading --------------------------------------------------------------------------------

    def _from_pretrained(self, base: ResolvedModel, local_only: bool) -> tuple[Any, Any]:
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        trust = bool(self.config.trust_remote_code)
        kwargs: dict[str, Any] = {"trust_remote_code": trust}
        if local_only:
            kwargs["local_files_only"] = True
        hf_config = AutoConfig.from_pretrained(base.path, **kwargs)
        if getattr(hf_config, "is_encoder_decoder", False):
            raise ModelError(f"model {base.ref} is an encoder-decoder ({hf_config.model_type}); "
                             "backend hf scores decoder-only causal LMs")
        architectures = [str(a) for a in (getattr(hf_config, "architectures", None) or [])]
        if architectures and not any(a.endswith(_CAUSAL_SUFFIXES) for a in architectures):
            raise ModelError(f"model {base.ref} is not a causal LM (architectures: {', '.join(architectures)}); "
                             "use --backend encoder for sequence classifiers")
        tok_kwargs = dict(kwargs)
        if self.config.add_bos is not None:  # as lm-eval: passed to the tokenizer and to every encode call
            tok_kwargs["add_bos_token"] = self.config.add_bos
        tokenizer = AutoTokenizer.from_pretrained(base.path, **tok_kwargs)
        if self.config.chat_template and not getattr(tokenizer, "chat_template", None):
            raise UsageError(f"--chat-template: the tokenizer of model {base.ref} has no chat template")
        model = AutoModelForCausalLM.from_pretrained(base.path, dtype=self.load_dtype, **kwargs)
        return tokenizer, model

    def _load(self, base: ResolvedModel, adapter_dir: str | None) -> tuple[Any, Any, list[str]]:
        notes: list[str] = []
        tokenizer, model = load_cache_first(
            base, lambda local_only: self._from_pretrained(base, local_only), what="causal LM", kind="causal")
        if adapter_dir is not None:
            model = self._merge_adapter(model, adapter_dir)
            notes.append(f"peft adapter {adapter_dir} (merged into the weights)")
        model.to(self.device)
        return tokenizer, model, notes

    @staticmethod
    def _merge_adapter(model: Any, adapter_dir: str) -> Any:
        try:
            return load_peft_adapter(model, adapter_dir).merge_and_unload()
        except ModelError:
            raise
        except Exception as err:
            raise ModelError(f"cannot merge peft adapter {adapter_dir}: {one_line(err)}") from err

    def _max_length(self) -> int:
        """lm-eval's resolve_max_length (text_config / config attributes, tokenizer, 2048), or --max-length."""
        return resolve_max_length(self.model.config, self.tokenizer, "causal", self.config.max_length, self.ref)

    # -- continuation logits -----------------------------------------------------------------------------------

    def _head_inputs(self, ids: torch.Tensor, mask: torch.Tensor, keep: torch.Tensor, mode: str,
                     position_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Logits [n_kept, vocab] at the positions where `keep` (bool [batch, seq]) is True, in row-major order.

        `mask` is a 2D padding mask, or a prepared 4D mask (packed rows) given with explicit `position_ids`."""
        extra: dict[str, Any] = {"use_cache": False}
        if position_ids is not None:
            extra["position_ids"] = position_ids
        if mode == "logits_to_keep":
            logits = self.model(input_ids=ids, attention_mask=mask, logits_to_keep=keep, **extra).logits
            if logits.ndim != 2:
                raise ScoreError(f"model {self.ref} ignored logits_to_keep (logits {tuple(logits.shape)})")
            return logits
        out = self.model.base_model(input_ids=ids, attention_mask=mask, **extra)
        hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
        gathered = hidden[keep]
        head = self.model.get_output_embeddings()
        cfg = getattr(self.model.config, "text_config", None) or self.model.config
        cap = getattr(cfg, "final_logit_softcapping", None)
        vocab = int(head.weight.shape[0])
        step = max(1, _LOGIT_CHUNK_ELEMENTS // max(vocab, 1))
        parts = []
        for start in range(0, gathered.shape[0], step):
            part = head(gathered[start:start + step])
            if cap is not None:
                part = torch.tanh(part / cap) * cap
            parts.append(part)
        return torch.cat(parts) if parts else gathered.new_zeros((0, vocab))

    def _probe_tokens(self) -> list[int]:
        probe = list(self.tokenizer.encode("The capital of France is Paris, and the capital of Italy is Rome.",
                                           add_special_tokens=False))[:14]
        return probe if len(probe) >= 12 else [(i * 7919 + 11) % 1000 for i in range(14)]

    def _check_head(self) -> str:
        """Pick how continuation logits are computed, checked against the model's own full logits once."""
        probe = self._probe_tokens()[:8]
        ids = torch.tensor([probe], dtype=torch.long, device=self.device)
        mask = torch.ones_like(ids)
        keep = torch.zeros_like(ids, dtype=torch.bool)
        keep[0, 1:] = True
        tol = _check_tolerances(next(self.model.parameters()).dtype).head
        with torch.inference_mode():
            reference = self.model(input_ids=ids, attention_mask=mask, use_cache=False).logits[0, 1:].float()
            scale = float(reference.abs().max()) + 1.0
            for mode in ("logits_to_keep", "base_model+output_embeddings"):
                try:
                    got = self._head_inputs(ids, mask, keep, mode).float()
                except Exception:  # an unsupported path falls through to the next one
                    continue
                if got.shape == reference.shape and float((got - reference).abs().max()) <= tol * scale:
                    return mode
        raise ModelError(f"model {self.ref}: cannot compute continuation-only logits (neither logits_to_keep "
                         "nor base model + output embeddings reproduce the model's logits)")

    def _packing_limit(self) -> int:
        cfg = getattr(self.model.config, "text_config", None) or self.model.config
        window = getattr(cfg, "sliding_window", None)
        limit = _PACK_MAX_LENGTH
        if isinstance(window, int) and window > 0:
            limit = min(limit, window)
        return limit

    def _check_packing(self) -> bool:
        """Packed rows (shared prefix + several suffixes, 4D mask, explicit positions) must reproduce the
        separate forward passes on a probe; otherwise packing stays off."""
        if not self.options.pack:
            return False
        if getattr(self.model.config, "_attn_implementation", None) not in ("sdpa", "eager"):
            return False
        # fp32 weights (always on CPU; the check runs without autocast): the same numbers. Half-precision CUDA
        # weights: the same up to rounding (a wrong mask or wrong positions move every later log-prob a lot).
        tol = _check_tolerances(next(self.model.parameters()).dtype)
        max_tol, mean_tol = tol.pack_max, tol.pack_mean
        autocast, self._autocast = self._autocast, False
        probe = self._probe_tokens()
        first, second = tuple(probe[:12]), tuple(probe[:6]) + tuple(reversed(probe[6:12]))
        try:
            with torch.inference_mode():
                row = _Row([first, second], 6)
                keep = {first: list(range(12)), second: list(range(12))}
                got = self._forward_rows([row], keep)
                for member in (first, second):
                    ids = torch.tensor([member], dtype=torch.long, device=self.device)
                    logits = self.model(input_ids=ids, use_cache=False).logits[0]
                    diff = (got[member] - torch.log_softmax(logits.float(), dim=-1)).abs()
                    if not (float(diff.max()) <= max_tol and float(diff.mean()) <= mean_tol):  # NaN fails too
                        return False
        except torch.cuda.OutOfMemoryError:
            raise  # not a verdict on packing: the caller's out-of-memory handling applies
        except (RuntimeError, ValueError, TypeError, NotImplementedError) as err:
            # a model whose attention rejects custom 4D masks or explicit positions: no packing, and say why
            self._packing_refusal = one_line(err)
            return False
        finally:
            self._autocast = autocast
        return True

    def _mask4d(self, segments: torch.Tensor) -> torch.Tensor:
        """[batch, 1, T, T] mask for packed rows: causal, and a token sees the shared prefix (segment 0) and its
        own segment; padding (segment -1) sees only itself so no row is all-masked."""
        width = segments.shape[1]
        idx = torch.arange(width, device=segments.device)
        causal = idx[:, None] >= idx[None, :]
        seg_q, seg_k = segments[:, :, None], segments[:, None, :]
        allowed = causal & (seg_k >= 0) & ((seg_k == 0) | (seg_k == seg_q))
        allowed |= (seg_q < 0) & (idx[:, None] == idx[None, :])
        allowed = allowed[:, None]
        if self.model.config._attn_implementation == "sdpa":
            return allowed
        dtype = torch.float32 if self.device.type == "cpu" else self.dtype
        return torch.zeros(allowed.shape, dtype=dtype, device=segments.device).masked_fill(
            ~allowed, torch.finfo(dtype).min)

    def _forward_rows(self, rows: list[_Row], keep: dict[Tokens, list[int]]) -> dict[Tokens, torch.Tensor]:
        """One forward over `rows`; per member, log-softmax (float32) [len(keep[member]), vocab] at its own
        positions `keep[member]`. (For `_check_packing` only: it keeps every row of log-probs.)"""
        batch = _Batch(rows, keep, pad=0, device=self.device)
        logits = self._batch_logits(batch)
        lsm = torch.log_softmax(logits.float(), dim=-1)
        return {m: lsm[batch.logit_rows(m, keep[m])] for row in rows for m in row.members}

    def _batch_logits(self, batch: _Batch) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self._autocast):
            if batch.packed:
                return self._head_inputs(batch.ids, self._mask4d(batch.segments), batch.keep, self._head_mode,
                                         position_ids=batch.positions)
            return self._head_inputs(batch.ids, batch.mask, batch.keep, self._head_mode)

    # -- tokenisation (lm-eval HFLM) -------------------------------------------------------------------------

    def tok_encode(self, string: str, add_special_tokens: bool | None = None) -> list[int]:
        """Exactly lm-eval 0.4.13 ``HFLM.tok_encode`` (without left truncation)."""
        return self.request_encoder.tok_encode(string, add_special_tokens)

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """(context tokens, continuation tokens) exactly as lm-eval 0.4.13 tokenises a loglikelihood request."""
        return self.request_encoder.encode_pair(context, continuation)

    @property
    def prompt_version(self) -> str | None:
        return self.request_encoder.prompt_version

    @property
    def numerics(self) -> Mapping[str, Any] | None:
        """How the scores are computed beyond device and dtype (part of the run identity, see the runner)."""
        return {"autocast": self._autocast, "packing": self._packing}

    # -- scoring ---------------------------------------------------------------------------------------------

    def _unit(self, context_enc: list[int], continuation_enc: list[int], where: str) -> _Unit:
        if not continuation_enc:
            raise ScoreError(f"{where}: the continuation encodes to no tokens")
        if not context_enc:
            raise ScoreError(f"{where}: the context encodes to no tokens")
        whole = context_enc + continuation_enc
        window = whole[-(self.max_length + 1):]
        inp = tuple(window[:-1])
        n_scored = min(len(continuation_enc), len(inp))
        return _Unit(inp=inp, targets=tuple(window[len(window) - n_scored:]), n_cont=len(continuation_enc),
                     truncated=len(whole) > self.max_length + 1)

    def _pack(self, owners: list[Tokens]) -> list[_Row]:
        """Rows from lexicographically sorted inputs: neighbours sharing >= _PACK_MIN_SHARED leading tokens
        (e.g. the candidates of one example) share one row when packing is on."""
        rows: list[_Row] = []
        i = 0
        while i < len(owners):
            group = [owners[i]]
            prefix = len(owners[i])
            j = i + 1
            while self._packing and j < len(owners) and len(group) < _PACK_MAX_MEMBERS:
                nxt = owners[j]
                shared = _common_prefix(group[0], nxt, prefix)
                if shared < _PACK_MIN_SHARED:
                    break
                new_total = shared + sum(len(m) - shared for m in group) + len(nxt) - shared
                if new_total > self._pack_limit:
                    break
                group.append(nxt)
                prefix = shared
                j += 1
            rows.append(_Row(group, prefix))
            i = j
        return rows

    def _batches(self, rows: list[_Row]) -> list[list[_Row]]:
        """Longest-first rows cut into batches (token budget per batch, or fixed rows)."""
        limit, packing, auto = self._pack_limit, self._packing, self.auto_batch

        def split(first: int, length: int) -> bool:
            # padding-aware: a batch only takes rows at least _MIN_FILL of its width long; and a batch with packed
            # rows uses a 4D mask for all its rows: keep rows longer than the packing limit (which may need the
            # model's own sliding-window mask) out of such batches
            return ((auto and length < _MIN_FILL * first)
                    or (packing and (length > limit) != (first > limit)))

        # rows come sorted longest first (its stable sort then keeps their order)
        collator = Collator([r.length for r in rows])
        batches = (collator.batches(self.batch_size if self._cap_rows else None, token_budget=self.token_budget,
                                    split=split) if auto else collator.batches(self.batch_size, split=split))
        return [[rows[i] for i in idx] for idx in batches]

    def _run_batch(self, rows: list[_Row], needed: dict[Tokens, dict[int, set[int]]]) -> dict[_Key, tuple[float, bool]]:
        """Forward one batch; (input, position, target) -> (log-prob, target is the argmax)."""
        keep = {m: sorted(needed[m]) for row in rows for m in row.members}
        pad_id = self.tokenizer.pad_token_id
        batch = _Batch(rows, keep, pad=int(pad_id) if pad_id is not None else 0, device=self.device)
        logits = self._batch_logits(batch)
        row_idx: list[int] = []
        tok_idx: list[int] = []
        keys: list[_Key] = []
        for row in rows:
            for m in row.members:
                for pos, lrow in zip(keep[m], batch.logit_rows(m, keep[m]), strict=True):
                    for tok in sorted(needed[m][pos]):
                        row_idx.append(lrow)
                        tok_idx.append(tok)
                        keys.append((m, pos, tok))
        vocab = int(logits.shape[-1])
        step = max(1, _LOGIT_CHUNK_ELEMENTS // max(vocab, 1))
        rows_t = torch.tensor(row_idx, dtype=torch.long, device=logits.device)
        toks_t = torch.tensor(tok_idx, dtype=torch.long, device=logits.device)
        values = torch.empty(len(keys), dtype=torch.float32, device=logits.device)
        greedy = torch.empty(len(keys), dtype=torch.bool, device=logits.device)
        for start in range(0, logits.shape[0], step):
            stop = min(start + step, logits.shape[0])
            sel = ((rows_t >= start) & (rows_t < stop)).nonzero(as_tuple=True)[0]
            if sel.numel() == 0:
                continue
            part = torch.log_softmax(logits[start:stop].float(), dim=-1)
            local = rows_t[sel] - start
            values[sel] = part[local, toks_t[sel]]
            greedy[sel] = part.argmax(dim=-1)[local] == toks_t[sel]
        return {key: (float(v), bool(g)) for key, v, g in zip(keys, values.tolist(), greedy.tolist(), strict=True)}

    def _forward_all(self, units: list[_Unit]) -> dict[_Key, tuple[float, bool]]:
        """Run every distinct input once (prefixes read from a longer input) and collect the log-probs."""
        distinct = sorted({u.inp for u in units})
        # an input that is a prefix of another one is a prefix of its successor in sorted order
        owner: dict[Tokens, Tokens] = {}
        for i in range(len(distinct) - 1, -1, -1):
            s = distinct[i]
            nxt = distinct[i + 1] if i + 1 < len(distinct) else None
            owner[s] = owner[nxt] if nxt is not None and nxt[:len(s)] == s else s
        needed: dict[Tokens, dict[int, set[int]]] = {}
        for u in units:
            n = len(u.inp)
            slots = needed.setdefault(owner[u.inp], {})
            for k, tok in enumerate(u.targets):
                slots.setdefault(n - len(u.targets) + k, set()).add(tok)
        rows = self._pack(sorted(needed))
        rows.sort(key=lambda r: -r.length)  # stable: lexicographic order among equal lengths
        results: dict[_Key, tuple[float, bool]] = {}
        with torch.inference_mode():
            pending = self._batches(rows)
            while pending:
                batch = pending.pop(0)
                try:
                    results.update(self._run_batch(batch, needed))
                    continue
                except RuntimeError as err:  # torch.OutOfMemoryError, AcceleratorError, cuBLAS alloc failures
                    if not is_out_of_memory(err):
                        raise
                    if not self._retry_oom or len(batch) == 1:
                        raise ScoreError(f"out of memory scoring {len(batch)} row(s) of {batch[0].length} tokens "
                                         f"on {self.device}: {one_line(err)}") from err
                # out of the except block: the traceback (and the failed forward's tensors) is gone, so emptying
                # the cache can return that memory (inside it, nothing would be freed)
                release_memory(self.device)
                half = max(1, len(batch) // 2)
                self.token_budget = max(1, half * batch[0].length)
                self.batch_size = max(1, min(self.batch_size, half))
                pending = self._batches([row for b in [batch, *pending] for row in b])
        # re-key from owners to the units' own inputs
        mapped: dict[_Key, tuple[float, bool]] = {}
        for u in units:
            own = owner[u.inp]
            n = len(u.inp)
            for k, tok in enumerate(u.targets):
                pos = n - len(u.targets) + k
                mapped[(u.inp, pos, tok)] = results[(own, pos, tok)]
        return mapped

    def _score_units(self, units: list[_Unit]) -> list[tuple[float, bool]]:
        table = self._forward_all(units)
        scores: list[tuple[float, bool]] = []
        for u in units:
            n = len(u.inp)
            total = 0.0
            all_greedy = True
            for k, tok in enumerate(u.targets):
                lp, g = table[(u.inp, n - len(u.targets) + k, tok)]
                total += lp
                all_greedy = all_greedy and g
            scores.append((total, all_greedy))
        return scores

    def score(self, requests: Sequence[Request]) -> list[Score]:
        if self._closed:
            raise ScoreError(f"hf backend for {self.ref} was closed")
        if not requests:
            return []
        encoded = self.request_encoder.units(requests)
        units = [self._unit(list(e.context), list(e.continuation), e.where) for e in encoded]
        raw = self._score_units(units)
        return self.request_encoder.scores(encoded, raw, truncated=[u.truncated for u in units])


__all__ = ["HFCausalBackend", "default_model"]

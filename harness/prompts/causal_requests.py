"""Requests -> token ids for causal LMs, exactly as lm-evaluation-harness 0.4.13 tokenises them.

Shared by every causal backend (transformers, vLLM), so they score identical token sequences:

- lm-eval's split (`HFLM._encode_pair`): trailing whitespace of the context moves to the continuation;
  whole = tok_encode(context + continuation), context = tok_encode(context), continuation = the rest.
- An empty context (`TemplateLM.loglikelihood`) becomes the prefix token (BOS, else EOS) and the continuation
  is encoded without special tokens.
- `tok_encode` adds special tokens per the tokenizer default, unless `add_bos` forces it, and never when the
  string already starts with the prefix token's text.
- `--chat-template` wraps the context as one user turn with the generation prompt and drops the target
  delimiter, as lm-eval's chat mode does.
- Judge mode (`--prompt statements`): each statement becomes two requests, " True" and " False" after
  `JUDGE_TEMPLATE`, and its score is P(True) normalised over the two.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from harness.core import LoglikelihoodRequest, Request, RequestKind, Score, StatementRequest
from harness.errors import ScoreError, UsageError
from harness.prompts.judge import JUDGE_FALSE, JUDGE_PROMPT_VERSION, JUDGE_TEMPLATE, JUDGE_TRUE, p_true


@dataclass(frozen=True)
class EncodedUnit:
    """One (context, continuation) to score, as token ids; `where` names the request for messages."""

    context: tuple[int, ...]
    continuation: tuple[int, ...]
    where: str


def request_kind_for(prompt: str) -> RequestKind:
    if prompt in ("default", "lm-eval"):
        return "loglikelihood"
    if prompt == "statements":
        return "statement"
    raise UsageError(f"--prompt {prompt!r}: choose default, lm-eval or statements")


class CausalRequestEncoder:
    """lm-eval 0.4.13 tokenisation of loglikelihood requests (and judge-mode statements) for one tokenizer."""

    def __init__(self, tokenizer: Any, *, prompt: str, add_bos: bool | None, chat_template: bool,
                 max_length: int, ref: str) -> None:
        self.tokenizer = tokenizer
        self.request_kind = request_kind_for(prompt)
        self.add_bos = add_bos
        self.chat_template = chat_template
        self.max_length = max_length
        self.ref = ref
        if chat_template and not getattr(tokenizer, "chat_template", None):
            raise UsageError(f"--chat-template: the tokenizer of model {ref} has no chat template")
        self.prefix_token_id = self._prefix_token_id()
        self._prefix_text = tokenizer.decode(self.prefix_token_id) if self.prefix_token_id is not None else None

    @property
    def prompt_version(self) -> str | None:
        """Backends report this so judge-mode runs record the judge prompt's version."""
        return JUDGE_PROMPT_VERSION if self.request_kind == "statement" else None

    @property
    def notes(self) -> tuple[str, ...]:
        bos = "tokenizer default" if self.add_bos is None else ("forced on" if self.add_bos else "forced off")
        notes = [f"add_bos: {bos}; empty contexts start with token {self.prefix_token_id}",
                 f"chat template {'on' if self.chat_template else 'off'}"]
        if self.request_kind == "statement":
            notes.append(f"judge mode ({JUDGE_PROMPT_VERSION}): P(True) from {JUDGE_TRUE!r} vs {JUDGE_FALSE!r} "
                         f"after {JUDGE_TEMPLATE!r}")
        return tuple(notes)

    def _prefix_token_id(self) -> int | None:
        """lm-eval's prefix_token_id: BOS if the tokenizer has one, else EOS."""
        bos = getattr(self.tokenizer, "bos_token_id", None)
        if bos is not None:
            return int(bos)
        eos = getattr(self.tokenizer, "eos_token_id", None)
        return int(eos) if eos is not None else None

    # -- lm-eval HFLM.tok_encode ---------------------------------------------------------------------------------

    def _special_kwargs(self, string: str, add_special_tokens: bool | None) -> dict[str, bool]:
        """Explicit > add_bos > tokenizer default; no specials if the string starts with the prefix text."""
        kwargs: dict[str, bool] = {}
        if add_special_tokens is not None:
            kwargs["add_special_tokens"] = add_special_tokens
        elif self.add_bos is not None:
            kwargs["add_special_tokens"] = self.add_bos
        if add_special_tokens is None and self._prefix_text is not None and string.startswith(self._prefix_text):
            kwargs["add_special_tokens"] = False
        return kwargs

    def tok_encode(self, string: str, add_special_tokens: bool | None = None) -> list[int]:
        """Exactly lm-eval 0.4.13 ``HFLM.tok_encode`` (without left truncation)."""
        return list(self.tokenizer.encode(string, verbose=False, **self._special_kwargs(string, add_special_tokens)))

    def tok_encode_many(self, strings: Sequence[str], add_special_tokens: bool | None = None) -> list[list[int]]:
        """`tok_encode` for many strings: one batched tokenizer call per special-tokens setting."""
        groups: dict[bool | None, list[int]] = {}
        for i, s in enumerate(strings):
            groups.setdefault(self._special_kwargs(s, add_special_tokens).get("add_special_tokens"), []).append(i)
        out: list[list[int]] = [[] for _ in strings]
        for flag, idx in groups.items():
            kwargs = {} if flag is None else {"add_special_tokens": flag}
            enc = self.tokenizer([strings[i] for i in idx], verbose=False, **kwargs)["input_ids"]
            for i, ids in zip(idx, enc, strict=True):
                out[i] = list(ids)
        return out

    # -- lm-eval's (context, continuation) split ---------------------------------------------------------------

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        return self.encode_pairs([(context, continuation)])[0]

    def encode_pairs(self, pairs: Sequence[tuple[str, str]]) -> list[tuple[list[int], list[int]]]:
        results: list[tuple[list[int], list[int]] | None] = [None] * len(pairs)
        empty = [i for i, (ctx, _) in enumerate(pairs) if ctx == ""]
        if empty:
            if self.prefix_token_id is None:
                raise ScoreError(f"model {self.ref}: an empty context needs a BOS or EOS token, "
                                 "and the tokenizer has neither")
            conts = self.tok_encode_many([pairs[i][1] for i in empty], add_special_tokens=False)
            for i, cont in zip(empty, conts, strict=True):
                if cont and cont[0] == self.prefix_token_id:
                    results[i] = (cont[:1], cont[1:])
                else:
                    results[i] = ([self.prefix_token_id], cont)
        rest = [i for i, (ctx, _) in enumerate(pairs) if ctx != ""]
        if rest:
            contexts: list[str] = []
            wholes: list[str] = []
            for i in rest:
                context, continuation = pairs[i]
                n_spaces = len(context) - len(context.rstrip())
                if n_spaces > 0:
                    continuation = context[-n_spaces:] + continuation
                    context = context[:-n_spaces]
                contexts.append(context)
                wholes.append(context + continuation)
            unique = list(dict.fromkeys(contexts))
            ctx_enc = dict(zip(unique, self.tok_encode_many(unique), strict=True))
            whole_enc = self.tok_encode_many(wholes)
            for i, context, whole in zip(rest, contexts, whole_enc, strict=True):
                c = ctx_enc[context]
                results[i] = (list(c), whole[len(c):])
        return [r for r in results if r is not None]

    def wrap(self, context: str, continuation: str) -> tuple[str, str]:
        """--chat-template: lm-eval's chat-mode context and continuation (no target delimiter)."""
        if not self.chat_template:
            return context, continuation
        templated = self.tokenizer.apply_chat_template(
            [{"role": "user", "content": context}], tokenize=False, add_generation_prompt=True,
            continue_final_message=False)
        return str(templated), continuation.removeprefix(" ")

    # -- requests <-> units <-> scores ---------------------------------------------------------------------------

    def units(self, requests: Sequence[Request]) -> list[EncodedUnit]:
        """One unit per loglikelihood request; two (" True", " False") per statement in judge mode."""
        pairs: list[tuple[str, str]] = []
        where: list[str] = []
        for r in requests:
            if self.request_kind == "loglikelihood":
                if not isinstance(r, LoglikelihoodRequest):
                    raise ScoreError(f"causal LM with --prompt lm-eval scores loglikelihood requests; "
                                     f"got a {r.kind} request ({r.example_id})")
                pairs.append(self.wrap(r.context, r.continuation))
                where.append(r.example_id)
            else:
                if not isinstance(r, StatementRequest):
                    raise ScoreError(f"causal LM with --prompt statements scores statements; "
                                     f"got a {r.kind} request ({r.example_id})")
                context = JUDGE_TEMPLATE.format(statement=r.text)
                pairs.append(self.wrap(context, JUDGE_TRUE))
                pairs.append(self.wrap(context, JUDGE_FALSE))
                where.extend([r.example_id, r.example_id])
        units = []
        for (ctx_ids, cont_ids), w in zip(self.encode_pairs(pairs), where, strict=True):
            if not cont_ids:
                raise ScoreError(f"{w}: the continuation encodes to no tokens")
            if not ctx_ids:
                raise ScoreError(f"{w}: the context encodes to no tokens")
            units.append(EncodedUnit(tuple(ctx_ids), tuple(cont_ids), w))
        return units

    def scores(self, units: Sequence[EncodedUnit], raw: Sequence[tuple[float, bool]],
               truncated: Sequence[bool] | None = None) -> list[Score]:
        """Per-unit (log-likelihood, greedy) -> one Score per original request."""
        import math

        cut = list(truncated) if truncated is not None else [False] * len(units)
        bad = [i for i, (v, _) in enumerate(raw) if not math.isfinite(v)]
        if bad:
            raise ScoreError(f"model {self.ref} returned NaN/inf log-likelihoods for {len(bad)} request(s), "
                             f"e.g. {units[bad[0]].where}")
        if self.request_kind == "loglikelihood":
            return [Score(value=v, truncated=t, n_tokens=len(u.continuation), greedy=g)
                    for (v, g), u, t in zip(raw, units, cut, strict=True)]
        out: list[Score] = []
        for j in range(0, len(units), 2):
            (lp_t, _), (lp_f, _) = raw[j], raw[j + 1]
            out.append(Score(value=p_true(lp_t, lp_f), truncated=cut[j] or cut[j + 1],
                             n_tokens=len(units[j].context), greedy=None))
        return out

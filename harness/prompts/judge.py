"""Judge mode: a causal LM scores a statement as P(True) from two one-word answers.

The context is ``JUDGE_TEMPLATE.format(statement=...)``; the continuations are ``JUDGE_TRUE`` and
``JUDGE_FALSE`` (lm-eval's target delimiter " " included). The score is the probability of " True" normalised
over the two answers: ``exp(lp_true) / (exp(lp_true) + exp(lp_false))``.
"""

from __future__ import annotations

import math

JUDGE_PROMPT_VERSION = "judge-v1"
JUDGE_TEMPLATE = "{statement}\nTrue or False? Answer:"
JUDGE_TRUE = " True"
JUDGE_FALSE = " False"


def judge_context(statement: str) -> str:
    return JUDGE_TEMPLATE.format(statement=statement)


def p_true(logprob_true: float, logprob_false: float) -> float:
    """exp(lpT) / (exp(lpT) + exp(lpF)), computed stably (a logistic of the difference)."""
    diff = logprob_true - logprob_false
    if diff >= 0:
        return 1.0 / (1.0 + math.exp(-diff))
    e = math.exp(diff)
    return e / (1.0 + e)

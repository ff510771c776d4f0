"""Prompt formats for causal LMs: lm-eval 0.4.13 log-likelihood requests and the statement-judge prompt."""

from harness.prompts.judge import JUDGE_FALSE, JUDGE_PROMPT_VERSION, JUDGE_TEMPLATE, JUDGE_TRUE, judge_context, p_true
from harness.prompts.lm_eval_prompts import PROMPT_VERSION, LMEvalRequestBuilder

__all__ = [
    "JUDGE_FALSE",
    "JUDGE_PROMPT_VERSION",
    "JUDGE_TEMPLATE",
    "JUDGE_TRUE",
    "PROMPT_VERSION",
    "LMEvalRequestBuilder",
    "judge_context",
    "p_true",
]

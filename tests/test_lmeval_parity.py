"""Parity with lm-evaluation-harness 0.4.13 on a CI-sized subset: every language of all four tasks (43
task/languages), smollm2-135m in fp32 on CPU. Per language it takes the example with the shortest lm-eval
requests among the first 20 (Burmese or Telugu stories are 1-2k tokens for SmolLM2's English tokenizer, and
both stacks score everything on CPU).

lm-eval itself (simple_evaluate on YAMLs generated from its own configs, HFLM) and our stack
(LMEvalRequestBuilder + HFCausalBackend) must produce identical request strings, identical token ids, summed
log-likelihoods within 1e-3 and identical acc / acc_norm predictions. The full proof (20 per language, also
gemma3-270m) is ``python benchmarks/parity_lmeval.py``; this test runs the same code.

Slow (about a minute on 2 CPU cores); it still runs in CI. BENCH_PARITY_LIMIT (examples per language, default 1)
and BENCH_PARITY_PICK (shortest | first) widen it.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

pytest.importorskip("lm_eval")

LIMIT = int(os.environ.get("BENCH_PARITY_LIMIT", "1"))
PICK = os.environ.get("BENCH_PARITY_PICK", "shortest")
SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "parity_lmeval.py"


def _parity_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("parity_lmeval", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module





@pytest.mark.slow
def test_parity_with_lm_eval_all_tasks_all_languages(threads: int) -> None:
    parity = _parity_module()
    report = parity.run_parity("smollm2-135m", limit=LIMIT, batch_size=16, device="cpu", progress=False,
                               threads=threads, pick=PICK, pool=20)
    text = parity.format_report(report)
    print(text)
    assert len(report.rows) == 43  # 11 xcopa + 15 xnli + 11 xstorycloze + 6 xwinograd languages
    assert report.n == 43 * LIMIT
    assert report.mismatches == [], text
    for row in report.rows:
        where = f"{row.task}/{row.language}"
        assert row.strings_agree == row.requests, where
        assert row.tokens_agree == row.requests, where
        assert row.max_abs_delta <= 1e-3, where
        assert row.acc_agree == row.n and row.acc_norm_agree == row.n, where
    assert report.ok

"""Bridge to lm-evaluation-harness (optional extra ``statement-bench[lmeval]``).

- `harness.lmeval.task_yaml`: lm-eval task YAMLs for our packaged data (copies of lm-eval's own configs that
  read local JSON Lines files instead of the Hub).
- `harness.lmeval.bridge`: `LMEvalBackend`, which runs lm-eval's own evaluation (``simple_evaluate`` with its
  ``hf`` model) and turns every logged sample into a `harness.core.Sample`.

Nothing here imports lm-eval at module import time; `require_lm_eval` gives the one-line error when it is
missing.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from pathlib import Path

from harness.errors import UsageError

LMEVAL_VERSION = "0.4.13"  # the version whose task configs and HFLM the bridge was verified against
INSTALL_HINT = "pip install 'statement-bench[lmeval]'"


def lm_eval_version() -> str | None:
    try:
        return importlib.metadata.version("lm_eval")
    except importlib.metadata.PackageNotFoundError:
        return None


def require_lm_eval() -> Path:
    """The installed ``lm_eval`` package directory (found without importing it), or a one-line UsageError."""
    try:
        spec = importlib.util.find_spec("lm_eval")
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise UsageError(f"the lm-eval backend needs lm-evaluation-harness {LMEVAL_VERSION}, which is not "
                         f"installed: {INSTALL_HINT}")
    return Path(locations[0])


def version_notes() -> tuple[str, ...]:
    installed = lm_eval_version()
    if installed is not None and installed != LMEVAL_VERSION:
        return (f"lm-eval {installed} is installed; the bridge was verified with lm-eval=={LMEVAL_VERSION}",)
    return ()


__all__ = ["INSTALL_HINT", "LMEVAL_VERSION", "lm_eval_version", "require_lm_eval", "version_notes"]

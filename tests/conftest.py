"""Shared fixtures. Tests run offline on CPU; the hub is never reached."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def quiet_lm_eval() -> Iterator[None]:
    """lm-eval's loggers at ERROR while a module's tests build its task objects (restored afterwards)."""
    pytest.importorskip("lm_eval")
    loggers = [logging.getLogger(n) for n in ("lm_eval", "lm-eval", "lm_eval.api.task")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


@pytest.fixture
def threads() -> Iterator[int]:
    """Torch threads for this test: the CPU cores shared fairly among pytest-xdist workers (oversubscribed
    threads slow torch down several-fold); the previous setting is restored afterwards."""
    import torch

    before = torch.get_num_threads()
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    n = max(1, min(before, (os.cpu_count() or 1) // max(workers, 1)))
    torch.set_num_threads(n)
    yield n
    torch.set_num_threads(before)


@pytest.fixture
def figure_texts(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every text drawn on the figures saved during a test (titles, axis labels, annotations, legend entries)."""
    from matplotlib.figure import Figure
    from matplotlib.text import Text

    from harness.reports import plots

    seen: list[str] = []
    save = plots._save

    def recording_save(fig: Figure, path: Path) -> Path:
        seen.extend(t.get_text() for t in fig.findobj(Text) if t.get_text())
        return save(fig, path)

    monkeypatch.setattr(plots, "_save", recording_save)
    return seen

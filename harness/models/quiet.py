"""Quiet loading: silence transformers' progress bars and load reports, and bitsandbytes' import notice."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def hf_quiet() -> Iterator[None]:
    """Silence transformers' progress bars and load reports (the harness reports what matters itself)."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def mute_bitsandbytes_kernel_notice() -> None:
    """Call before importing peft: bitsandbytes (pulled in by peft when installed) warns at import, on CPUs with
    avx512_bf16, that the optional ``kernels`` package is missing; that only matters to QLoRA speed, which
    `bench train` notes itself."""
    import logging

    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)

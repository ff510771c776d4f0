"""The package's own data (eval tasks, training sources): one reader and one cache policy for both.

A ``manifest.json`` lists every gzip JSON Lines file with its sha256 and row count. Every file is checked against
its sha256 before it is parsed; manifests and parsed rows are cached by (path, mtime, size) (plus the sha256 for
rows), bounded, and callers always get fresh copies, so a caller may change what it gets.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.errors import DataError, one_line

#: an exception as one line, whole (parser errors carry the detail on later lines)
_reason = functools.partial(one_line, limit=400, join_lines=True)
_REINSTALL = "reinstall statement-bench"
_CACHE_LIMIT = 256
_MANIFESTS: dict[tuple[str, int, int], dict[str, Any]] = {}
_ROWS: dict[tuple[str, int, int, str], list[dict[str, Any]]] = {}


def _stat_key(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return str(path.resolve()), st.st_mtime_ns, st.st_size


def _remember(cache: dict[Any, Any], key: Any, value: Any) -> None:
    if len(cache) >= _CACHE_LIMIT:
        cache.clear()
    cache[key] = value


def read_manifest(path: Path, *, what: str, reinstall: str, format_version: int, top_key: str) -> dict[str, Any]:
    """The parsed manifest (shared, not copied: callers only read it); DataError naming the file otherwise."""
    try:
        key = _stat_key(path)
    except OSError:
        raise DataError(f"{path}: {what} manifest is missing; {_REINSTALL}") from None
    cached = _MANIFESTS.get(key)
    if cached is None:
        try:
            cached = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataError(f"{path}: unreadable {what} manifest ({_reason(exc)}); {reinstall}") from None
        if not isinstance(cached, dict) or not isinstance(cached.get(top_key), dict):
            raise DataError(f"{path}: malformed {what} manifest (no '{top_key}' object); {reinstall}")
        if cached.get("format_version") != format_version:
            raise DataError(f"{path}: {what} manifest format_version {cached.get('format_version')!r} is not "
                            f"{format_version}; {_REINSTALL}")
        _remember(_MANIFESTS, key, cached)
    return cached


def read_verified(path: Path, expected: str, *, what: str, reinstall: str) -> bytes:
    """The bytes of a packaged file whose sha256 must be ``expected``."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: {what} file cannot be read ({_reason(exc)}); {reinstall}") from None
    got = hashlib.sha256(data).hexdigest()
    if got != expected:
        raise DataError(f"{path}: checksum mismatch (expected {expected[:12]}..., got {got[:12]}...); {reinstall}")
    return data


def verified_rows(path: Path, expected: str, rows: int | None, *, what: str, reinstall: str,
                  check: Callable[[dict[str, Any], int], None] | None = None) -> list[dict[str, Any]]:
    """The rows of a packaged gzip JSON Lines file: sha256-checked, counted against the manifest, each passed to
    ``check(row, line)`` (which may raise ValueError), parsed once per file version; fresh copies every call."""
    try:
        key = (*_stat_key(path), expected)
    except OSError:
        raise DataError(f"{path}: {what} file is missing; {_REINSTALL}") from None
    parsed = _ROWS.get(key)
    if parsed is None:
        parsed = parse_jsonl_gz(path, read_verified(path, expected, what=what, reinstall=reinstall), reinstall,
                                check)
        if rows is not None and len(parsed) != rows:
            raise DataError(f"{path}: {len(parsed)} rows, the manifest says {rows}; {reinstall}")
        _remember(_ROWS, key, parsed)
    return [{k: list(v) if isinstance(v, list) else v for k, v in row.items()} for row in parsed]


def parse_jsonl_gz(path: Path, data: bytes, reinstall: str,
                   check: Callable[[dict[str, Any], int], None] | None = None) -> list[dict[str, Any]]:
    """Rows of a gzip JSON Lines file; ``check(row, line)`` may raise ValueError for a bad row.
    Every failure is one DataError naming the file (and line)."""
    try:
        text = gzip.decompress(data).decode("utf-8")
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: corrupt or truncated gzip data ({_reason(exc)}); {reinstall}") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 ({_reason(exc)}); {reinstall}") from None
    return parse_jsonl_text(path, text, reinstall, check)


def parse_jsonl_text(path: Path, text: str, reinstall: str,
                     check: Callable[[dict[str, Any], int], None] | None = None) -> list[dict[str, Any]]:
    """Rows of JSON Lines text (see `parse_jsonl_gz`)."""
    rows: list[dict[str, Any]] = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: line {n}: bad JSON ({exc.msg}); {reinstall}") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}: line {n}: not a JSON object; {reinstall}")
        if check is not None:
            try:
                check(row, n)
            except ValueError as exc:
                raise DataError(f"{path}: {_reason(exc)}; {reinstall}") from None
        rows.append(row)
    return rows

#!/usr/bin/env python
"""Package the Statement-Tuning training sources into ``harness/training/data`` (a dev tool; the output is committed).

    python scripts/package_train_data.py [--shared ../shared/data] [--out harness/training/data] [--max-rows 1500]

The converters in ``scripts/train_data/group_a.py`` and ``group_b.py`` read the raw local copies described in
``<shared>/train/README.md`` and each folder's ``SOURCE.md`` and return normalised rows (the contract in
``harness/training/rows.py``). This script, for every source and language:

* checks every row with ``check_row`` (and that it has no other keys), stopping with a message naming the row;
* de-duplicates rows by ``id`` (first kept) and keeps at most ``--max-rows`` of them, by a seeded sample (rows
  sorted by id, ``random.Random("<source>/<lang>").sample``, then back in id order). For the parallel sources
  (flores200) one sample of ids is drawn (``random.Random("<source>")``) and kept in every language, so that
  translation pairs stay parallel;
* writes ``<source>/<lang>.jsonl.gz`` (keys in contract order, gzip level 9, mtime 0).

It also writes ``manifest.json`` (licence, provenance, note, and the sha256 and row counts of every file),
``LICENSES.md`` and ``LICENSE-<source>[-<n>].txt`` (copies of the upstream licence texts). The output is
deterministic: running the script twice gives identical bytes. Nothing under ``--shared`` is read at run time.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import importlib
import json
import random
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
for _p in (REPO, REPO / "scripts"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from harness.training.rows import ROW_FIELDS, check_row  # noqa: E402
from scripts.train_data.common import SHARED_DEFAULT, TARGET_LANGS, SourceError, SourceInfo  # noqa: E402

DEFAULT_OUT = REPO / "harness" / "training" / "data"
DEFAULT_MAX_ROWS = 1500
FORMAT_VERSION = 1
GZIP_LEVEL = 9
GROUPS = ("group_a", "group_b")
#: sources whose rows are parallel across languages by id: the same ids are kept in every language
PARALLEL = frozenset({"flores200"})
SIZE_TARGET = 15 * 10**6


class PackagingError(Exception):
    pass


def fail(msg: str) -> None:
    raise PackagingError(msg)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Output:
    """Collects the files to write (relative path -> bytes) so that stale files can be removed afterwards."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}

    def add(self, rel: str, data: bytes) -> str:
        if rel in self.files:
            fail(f"internal: {rel} written twice")
        self.files[rel] = data
        return sha256(data)

    def write(self, out: Path) -> None:
        out.mkdir(parents=True, exist_ok=True)
        for rel, data in sorted(self.files.items()):
            path = out / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.exists() or path.read_bytes() != data:
                path.write_bytes(data)
        for path in sorted(out.rglob("*"), reverse=True):
            rel = path.relative_to(out).as_posix()
            if path.is_file() and rel not in self.files:
                print(f"removing stale {rel}")
                path.unlink()
            elif path.is_dir() and not any(path.iterdir()):
                path.rmdir()


# -------------------------------------------------------------------------------------------------- sources

def load_sources() -> list[SourceInfo]:
    sources: list[SourceInfo] = []
    for group in GROUPS:
        module_file = REPO / "scripts" / "train_data" / f"{group}.py"
        if not module_file.is_file():
            fail(f"{module_file}: missing (it must define SOURCES: list[SourceInfo]); the packaged data needs "
                 "every source group")
        module = importlib.import_module(f"scripts.train_data.{group}")
        got = getattr(module, "SOURCES", None)
        if not isinstance(got, list) or not got:
            raise PackagingError(f"{module_file}: no non-empty SOURCES list")
        sources.extend(got)
    names = [s.name for s in sources]
    dups = sorted({n for n in names if names.count(n) > 1})
    if dups:
        fail(f"scripts/train_data: source names defined twice: {dups}")
    for s in sources:
        if s.task_type not in ROW_FIELDS:
            fail(f"source {s.name}: task_type {s.task_type!r} is not one of {list(ROW_FIELDS)}")
        if not s.name.replace("_", "").isalnum() or s.name != s.name.lower():
            fail(f"source {s.name!r}: name must be lower-case letters, digits and '_'")
        for field in ("license", "provenance", "note"):
            if not str(getattr(s, field)).strip():
                fail(f"source {s.name}: empty {field}")
    return sorted(sources, key=lambda s: s.name)


def license_path(shared: Path, path: Path) -> Path:
    return path if path.is_absolute() else shared / path


def license_label(shared: Path, path: Path) -> str:
    full = license_path(shared, path)
    try:
        return full.resolve().relative_to(shared.resolve()).as_posix()
    except ValueError:
        return full.name


# ------------------------------------------------------------------------------------------------- rows

def clean_rows(source: SourceInfo, lang: str, rows: Any) -> list[dict[str, Any]]:
    """Check every row against the contract, put its keys in contract order, drop duplicate ids."""
    if not isinstance(rows, list):
        fail(f"{source.name}/{lang}: the converter returned {type(rows).__name__}, not a list of rows")
    fields = ("id", *ROW_FIELDS[source.task_type])
    out: dict[str, dict[str, Any]] = {}
    dropped = 0
    for n, row in enumerate(rows, 1):
        where = f"{source.name}/{lang} row {n}" + (f" (id {row.get('id')!r})" if isinstance(row, dict) else "")
        if not isinstance(row, dict):
            fail(f"{where}: not a dict")
        try:
            check_row(source.task_type, row, where)
        except ValueError as exc:
            fail(str(exc))
        extra = sorted(set(row) - set(fields))
        if extra:
            fail(f"{where}: fields {extra} are not in the {source.task_type} row contract")
        if row["id"] in out:
            dropped += 1
            continue
        out[row["id"]] = {k: row[k] for k in fields}
    if dropped:
        print(f"  {source.name}/{lang}: dropped {dropped} rows with a duplicate id")
    return list(out.values())


def sample_ids(ids: list[str], max_rows: int, seed: str) -> list[str]:
    ids = sorted(ids)
    if len(ids) <= max_rows:
        return ids
    return sorted(random.Random(seed).sample(ids, max_rows))


def select(source: SourceInfo, rows_by_lang: dict[str, list[dict[str, Any]]], max_rows: int) \
        -> dict[str, list[dict[str, Any]]]:
    if source.name in PARALLEL:
        id_sets = {lang: {r["id"] for r in rows} for lang, rows in rows_by_lang.items()}
        first = next(iter(id_sets.values()))
        for lang, ids in id_sets.items():
            if ids != first:
                fail(f"{source.name}/{lang}: ids differ from the other languages ({len(ids ^ first)} ids), but "
                     "the source must be parallel")
        keep = sample_ids(list(first), max_rows, source.name)
        chosen = {lang: keep for lang in rows_by_lang}
    else:
        chosen = {lang: sample_ids([r["id"] for r in rows], max_rows, f"{source.name}/{lang}")
                  for lang, rows in rows_by_lang.items()}
    out = {}
    for lang, rows in rows_by_lang.items():
        by_id = {r["id"]: r for r in rows}
        out[lang] = [by_id[i] for i in chosen[lang]]
    return out


def jsonl_gz_bytes(rows: list[dict[str, Any]]) -> bytes:
    raw = "".join(json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n" for row in rows)
    return gzip.compress(raw.encode("utf-8"), compresslevel=GZIP_LEVEL, mtime=0)


# ---------------------------------------------------------------------------------------------- licences

LICENSES_HEAD = """# Licences and attribution of the packaged training data

The files under this directory are normalised subsets (at most {max_rows} rows per source and language) of the
public datasets below, converted by `scripts/package_train_data.py` from local copies of the upstream repositories
(see `manifest.json` for each source's note: splits used, ids, script choices, what was dropped). Each dataset keeps
its own licence; the texts are copied as `LICENSE-<source>*.txt`. Share-alike (CC BY-SA) data stays under CC BY-SA
in anything derived from it (e.g. training statements).

**Research use only** for the sources marked below: non-commercial licences (CC BY-NC) and sources without any
stated licence. Do not ship models or data trained on them in commercial products without checking the terms.

| source | task type | licence | provenance | languages | licence texts | research-use warning |
|---|---|---|---|---|---|---|
"""

NO_LICENSE = ("none", "no licence", "not stated", "unknown")


def research_warning(source: SourceInfo) -> str:
    if source.non_commercial:
        return "**non-commercial: research use only**"
    if any(word in source.license.lower() for word in NO_LICENSE):
        return "**no licence stated: research use only**"
    if "non-commercial" in source.license.lower() or "-nc" in source.license.lower():
        return "**partly non-commercial (see the licence column): research use only**"
    return ""


def md_cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


# ----------------------------------------------------------------------------------------------------- main

def build(shared: Path, max_rows: int) -> tuple[Output, list[str]]:
    if not (shared / "train" / "README.md").is_file():
        fail(f"{shared}: not the shared data directory (no train/README.md)")
    if max_rows < 1:
        fail(f"--max-rows must be positive, got {max_rows}")
    out = Output()
    summary: list[str] = []
    manifest_sources: dict[str, Any] = {}
    table: list[str] = []
    for source in load_sources():
        try:
            converted = source.convert(shared)
        except SourceError as exc:
            fail(f"{source.name}: {exc}")
        except Exception as exc:  # a converter bug or a raw-file problem it did not anticipate
            fail(f"{source.name}: {type(exc).__name__}: {exc}")
        if not isinstance(converted, dict) or not converted:
            fail(f"{source.name}: the converter returned no languages")
        unknown = sorted(set(converted) - set(TARGET_LANGS))
        if unknown:
            fail(f"{source.name}: languages {unknown} are not in the 25-language target set")
        langs = sorted(lang for lang, rows in converted.items() if rows)
        if not langs:
            fail(f"{source.name}: no rows in any language")
        cleaned = {lang: clean_rows(source, lang, converted[lang]) for lang in langs}
        kept = select(source, cleaned, max_rows)
        languages: dict[str, Any] = {}
        for lang in langs:
            rel = f"{source.name}/{lang}.jsonl.gz"
            digest = out.add(rel, jsonl_gz_bytes(kept[lang]))
            languages[lang] = {"file": rel, "sha256": digest, "rows": len(kept[lang]),
                               "rows_available": len(cleaned[lang])}
        lic_files = []
        for i, path in enumerate(source.license_files, 1):
            full = license_path(shared, path)
            if not full.is_file():
                fail(f"{source.name}: licence file {full} is missing")
            name = f"LICENSE-{source.name}.txt" if i == 1 else f"LICENSE-{source.name}-{i}.txt"
            out.add(name, full.read_bytes())
            lic_files.append({"file": name, "upstream": license_label(shared, path)})
        manifest_sources[source.name] = {
            "task_type": source.task_type, "license": source.license, "provenance": source.provenance,
            "note": source.note, "non_commercial": bool(source.non_commercial), "license_files": lic_files,
            "languages": languages,
        }
        table.append("| " + " | ".join([
            f"`{source.name}`", source.task_type, md_cell(source.license), md_cell(source.provenance),
            " ".join(langs), ", ".join(f"`{f['file']}`" for f in lic_files) or "(none available)",
            research_warning(source)]) + " |")
        counts = " ".join(f"{lang}:{languages[lang]['rows']}" for lang in langs)
        summary.append(f"{source.name} ({source.task_type}, {len(langs)} langs): {counts}")
    out.add("LICENSES.md", (LICENSES_HEAD.format(max_rows=max_rows) + "\n".join(table) + "\n").encode("utf-8"))
    manifest = {"format_version": FORMAT_VERSION, "max_rows": max_rows, "sources": manifest_sources}
    out.add("manifest.json", (json.dumps(manifest, ensure_ascii=False, indent=2) + "\n").encode("utf-8"))
    return out, summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--shared", type=Path, default=SHARED_DEFAULT, help=f"shared data dir (default {SHARED_DEFAULT})")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output dir (default {DEFAULT_OUT})")
    ap.add_argument("--max-rows", type=int, default=DEFAULT_MAX_ROWS,
                    help=f"rows kept per source and language (default {DEFAULT_MAX_ROWS})")
    ap.add_argument("--quiet", action="store_true", help="print only the total")
    args = ap.parse_args(argv)
    try:
        out, summary = build(args.shared.resolve(), args.max_rows)
    except (PackagingError, OSError) as exc:
        print(f"package_train_data: {exc}", file=sys.stderr)
        return 1
    target: Path = args.out
    if target.exists() and any(target.iterdir()) and not (target / "manifest.json").exists():
        print(f"package_train_data: {target} is not empty and has no manifest.json; refusing to overwrite",
              file=sys.stderr)
        return 1
    out.write(target)
    if not args.quiet:
        print("\n".join(summary))
    total = sum(len(b) for b in out.files.values())
    print(f"wrote {len(out.files)} files, {total:,} bytes ({total / 2**20:.2f} MiB) to {target}")
    if total > SIZE_TARGET:
        print(f"package_train_data: warning: the packaged data is over the {SIZE_TARGET / 1e6:.0f} MB target",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The training mixture: which languages and task types, built into balanced statements plus a manifest.

The manifest makes a trained model traceable: counts per (task type, language, label) and per source, the config,
the template version, checksums of the packaged data, licences (non-commercial flags), the cells that fell short of
``per_task`` and why, and any eval-task overlap that was explicitly allowed.

``extra_sources`` are JSONL files of ready statements, one object per line:
``{"text": str, "label": 0|1, "source": str, "language": str, "task_type": str}`` plus optional ``template_id``,
``example_id`` and ``origin`` (the dataset the statements were derived from, checked by the leakage guard like
``source``). They are added as given: not sampled, capped or filtered by ``langs``/``task_types``.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from harness.errors import DataError, UsageError, one_line
from harness.languages import LANGUAGE_SETS, TRAINING_LANGUAGES
from harness.training.builders import Row, TrainStatement, build_cell
from harness.training.rows import TASK_TYPES
from harness.training.templates import TEMPLATE_LANGUAGES, TemplateFile, load_templates, templates_version


def eval_overlap_names() -> dict[str, str]:
    """Normalised dataset name -> the eval task it is (or is the English origin of); never train on these.
    Read from every known task file's ``overlap:`` list (the built-in tasks, and tasks loaded with
    --include-path in this process)."""
    from harness.tasks.registry import known_tasks

    names: dict[str, str] = {}
    for task, spec in known_tasks().items():
        for name in spec.overlap:
            names.setdefault(re.sub(r"[^0-9a-z]+", "", name.casefold()), task)
    return names


@dataclass(frozen=True)
class MixtureConfig:
    langs: str | tuple[str, ...] = "25"  # preset name ("en", "11", "25"), "a,b,c", or a tuple of codes
    task_types: tuple[str, ...] | None = None  # None = all
    per_task: int = 1500  # statements per (task type, language): half True, half False
    seed: int = 0
    template_language: str = "en"  # "en" | "translated"
    translation: bool = True
    allow_eval_overlap: bool = False
    extra_sources: tuple[str, ...] = ()  # JSONL files of ready statements


@dataclass(frozen=True)
class Mixture:
    statements: tuple[TrainStatement, ...]
    manifest: dict[str, Any]


def eval_overlap(name: str) -> tuple[str, str] | None:
    """(matched name, eval task) when ``name`` names an eval set or its origin, in any case/punctuation:
    "X-COPA", "multi_nli", "story_cloze", "super_glue/wsc273" all match."""
    names = eval_overlap_names()
    tokens = [t for t in re.split(r"[^0-9a-z]+", name.casefold()) if t]
    for i in range(len(tokens)):
        for j in range(i + 1, len(tokens) + 1):
            joined = "".join(tokens[i:j])
            for candidate in (joined, joined.rstrip("0123456789")):
                if candidate in names:
                    return candidate, names[candidate]
    return None


def _guard(name: str, origin: str, allow: bool, found: list[dict[str, str]]) -> None:
    """Refuse (or, when allowed, record) a source whose name or declared origin is an eval task."""
    for text in (name, origin):
        hit = eval_overlap(text) if text else None
        if hit is None:
            continue
        if not allow:
            raise UsageError(f"training source {name!r} overlaps eval task {hit[1]!r} (matches {hit[0]!r} in "
                             f"{text!r}); refused unless allow_eval_overlap (--allow-eval-overlap) is set")
        entry = {"source": name, "eval_task": hit[1], "matched": hit[0]}
        if entry not in found:
            found.append(entry)
        return


def resolve_langs(langs: str | Sequence[str], available: Iterable[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(languages of every task type, translation target languages). Only preset "en" translates into languages
    outside its list (the other 24); otherwise targets are the non-English languages of the list."""
    have = set(available)
    preset = langs if isinstance(langs, str) and langs in LANGUAGE_SETS else None
    if preset is not None:
        chosen = LANGUAGE_SETS[preset]
    else:
        raw = langs.split(",") if isinstance(langs, str) else list(langs)
        chosen = tuple(dict.fromkeys(code.strip() for code in raw if code.strip()))
        if not chosen:
            raise UsageError(f"--langs {langs!r}: no language given (presets: {', '.join(LANGUAGE_SETS)})")
    targets = tuple(c for c in (TRAINING_LANGUAGES if preset == "en" else chosen) if c != "en")
    for code in dict.fromkeys(chosen + targets):
        if code not in have:
            raise UsageError(f"--langs: unknown language {code!r}; the training data has {', '.join(sorted(have))}")
    return chosen, targets


def _text(obj: dict[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{where}: field {key!r} missing or not a non-empty string")
    return value


def _statement(obj: Any, where: str, default_id: str) -> TrainStatement:
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a JSON object")
    label = obj.get("label")
    if type(label) is not int or label not in (0, 1):
        raise DataError(f"{where}: field 'label' must be 0 or 1, got {label!r}")
    optional = {}
    for key in ("template_id", "example_id", "template_language"):
        if key in obj:
            optional[key] = _text(obj, key, where)
    return TrainStatement(text=_text(obj, "text", where), label=label, task_type=_text(obj, "task_type", where),
                          source=_text(obj, "source", where), language=_text(obj, "language", where),
                          template_id=optional.get("template_id", "extra"),
                          example_id=optional.get("example_id", default_id),
                          template_language=optional.get("template_language", "en"))


def _read_jsonl(path: Path) -> list[tuple[TrainStatement, str]]:
    """(statement, declared origin) per line; one-line DataError naming file and line."""
    out: list[tuple[TrainStatement, str]] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot read ({getattr(err, 'strerror', None) or err})") from err
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{where}: invalid JSON ({err.msg})") from err
        statement = _statement(obj, where, f"{path.stem}:{number}")
        origin = obj.get("origin", "")
        if not isinstance(origin, str):
            raise DataError(f"{where}: field 'origin' must be a string")
        out.append((statement, origin))
    if not out:
        raise DataError(f"{path}: no statements")
    return out


def read_extra_source(path: str | Path, allow_eval_overlap: bool = False,
                      overlap: list[dict[str, str]] | None = None) -> list[TrainStatement]:
    """Validate a user's JSONL statement file (see the module docstring) and apply the leakage guard."""
    file = Path(path)
    if not file.is_file():
        raise UsageError(f"extra source {file}: no such file")
    found = overlap if overlap is not None else []
    rows = _read_jsonl(file)
    for source, origin in dict.fromkeys((s.source, o) for s, o in rows):
        _guard(source, origin, allow_eval_overlap, found)
    return [s for s, _ in rows]


def _check_config(cfg: MixtureConfig) -> tuple[str, ...]:
    if cfg.per_task < 2 or cfg.per_task % 2:
        raise UsageError(f"per_task {cfg.per_task}: must be an even number >= 2 (half True, half False)")
    if cfg.template_language not in TEMPLATE_LANGUAGES:
        raise UsageError(f"template_language {cfg.template_language!r}: expected one of "
                         f"{', '.join(TEMPLATE_LANGUAGES)}")
    chosen = tuple(dict.fromkeys(cfg.task_types)) if cfg.task_types is not None else TASK_TYPES
    for task_type in chosen:
        if task_type not in TASK_TYPES:
            raise UsageError(f"task type {task_type!r} unknown; expected one of {', '.join(TASK_TYPES)}")
    return tuple(t for t in chosen if cfg.translation or t != "translation")


def build_mixture(cfg: MixtureConfig) -> Mixture:
    """Build every (task type, language) cell from the packaged rows, then add the extra statement files."""
    from harness.training import sources  # lazy: reads the packaged data index

    task_types = _check_config(cfg)
    packaged = sources.list_sources()
    languages, targets = resolve_langs(cfg.langs, {lang for s in packaged for lang in s.languages})
    templates = load_templates(cfg.template_language, tuple(dict.fromkeys(languages + targets)))
    plan: list[tuple[str, str, list[Any]]] = []
    missing: dict[str, list[str]] = {}
    overlap: list[dict[str, str]] = []
    for task_type in task_types:
        for lang in targets if task_type == "translation" else languages:
            used = sorted((s for s in packaged if s.task_type == task_type and lang in s.languages),
                          key=lambda s: s.name)
            for s in used:
                _guard(s.name, s.provenance, cfg.allow_eval_overlap, overlap)
            if used:
                plan.append((task_type, lang, used))
            else:
                missing.setdefault(task_type, []).append(lang)
    extra = [s for path in cfg.extra_sources for s in read_extra_source(path, cfg.allow_eval_overlap, overlap)]

    statements: list[TrainStatement] = []
    capped: list[dict[str, Any]] = []
    english: dict[str, Sequence[Row]] = {}
    pairs: set[tuple[str, str]] = set()
    files: dict[str, TemplateFile] = {}
    for task_type, lang, used in plan:
        pools = [(s.name, sources.load_rows(s.name, lang)) for s in used]
        pairs.update((s.name, lang) for s in used)
        if task_type == "translation":
            for s in used:
                if s.name not in english:
                    english[s.name] = sources.load_rows(s.name, "en") if "en" in s.languages else []
                    pairs.add((s.name, "en"))
        file = templates.pick(task_type, lang)
        files[file.language] = file
        cell = build_cell(task_type, lang, pools, file, per_task=cfg.per_task, seed=cfg.seed,
                          english={s.name: english[s.name] for s in used} if task_type == "translation" else None)
        statements.extend(cell.statements)
        if cell.capped:
            capped.append({"task_type": task_type, "language": lang, "per_side": cell.per_side,
                           "wanted": cell.wanted, "reason": cell.capped})
    statements.extend(extra)

    by_name = {s.name: s for s in packaged}
    used_sources = sorted({name for name, _ in pairs})
    manifest: dict[str, Any] = {
        "format": 1,
        "config": {**asdict(cfg), "languages": list(languages), "translation_languages": list(targets),
                   "task_types": list(task_types)},
        **count_statements(statements),
        "capped": capped,
        "missing": missing,
        "templates_version": templates_version(list(files.values())),
        "templates": {"mode": cfg.template_language, "files": {lang: f.sha256 for lang, f in sorted(files.items())}},
        "data_checksums": sources.data_checksums(sorted(pairs)),
        "sources": {name: {"task_type": by_name[name].task_type, "license": by_name[name].license,
                           "non_commercial": by_name[name].non_commercial, "provenance": by_name[name].provenance}
                    for name in used_sources},
        "non_commercial": sorted(name for name in used_sources if by_name[name].non_commercial),
        "extra_sources": [{"path": str(p), "sha256": hashlib.sha256(Path(p).read_bytes()).hexdigest()}
                          for p in cfg.extra_sources],
        "eval_overlap": overlap,
    }
    return Mixture(tuple(statements), manifest)


def count_statements(statements: Iterable[TrainStatement]) -> dict[str, Any]:
    """``counts``: "task_type/language/true|false" -> n; ``per_source``: "source/language" -> n; ``totals``."""
    counts: Counter[str] = Counter()
    per_source: Counter[str] = Counter()
    for s in statements:
        counts[f"{s.task_type}/{s.language}/{'true' if s.label else 'false'}"] += 1
        per_source[f"{s.source}/{s.language}"] += 1
    totals = {"statements": counts.total(), "true": sum(n for k, n in counts.items() if k.endswith("/true")),
              "false": sum(n for k, n in counts.items() if k.endswith("/false"))}
    return {"totals": totals, "counts": dict(sorted(counts.items())), "per_source": dict(sorted(per_source.items()))}


def split_statements(statements: Sequence[TrainStatement], holdout: float = 0.1,
                     seed: int = 0) -> tuple[list[TrainStatement], list[TrainStatement]]:
    """(train, heldout): ``holdout`` of every (task type, language, label) stratum, so both sides stay balanced
    and every cell is represented; order is kept."""
    if not 0 <= holdout < 1:
        raise UsageError(f"holdout {holdout}: must be in [0, 1)")
    strata: dict[tuple[str, str, int], list[int]] = {}
    for i, s in enumerate(statements):
        strata.setdefault((s.task_type, s.language, s.label), []).append(i)
    held: set[int] = set()
    for (task_type, lang, label), idx in strata.items():
        order = list(idx)
        random.Random(f"{seed}/split/{task_type}/{lang}/{label}").shuffle(order)
        held.update(order[:int(len(order) * holdout + 0.5)])
    train = [s for i, s in enumerate(statements) if i not in held]
    return train, [s for i, s in enumerate(statements) if i in held]


def write_statements(mixture: Mixture, directory: str | Path) -> Path:
    """``statements.jsonl`` (one statement per line) and ``manifest.json`` in ``directory`` (created)."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    with (out / "statements.jsonl").open("w", encoding="utf-8") as f:
        for s in mixture.statements:
            f.write(json.dumps(asdict(s), ensure_ascii=False) + "\n")
    (out / "manifest.json").write_text(json.dumps(mixture.manifest, ensure_ascii=False, indent=1) + "\n",
                                       encoding="utf-8")
    return out


def read_statements(directory: str | Path) -> Mixture:
    """Read what ``write_statements`` wrote; one-line DataError naming the file (and line) when broken."""
    root = Path(directory)
    manifest_path = root / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise DataError(f"{manifest_path}: no such file (not a statements directory)") from err
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{manifest_path}: unreadable ({one_line(err)})") from err
    if not isinstance(manifest, dict):
        raise DataError(f"{manifest_path}: expected a JSON object")
    path = root / "statements.jsonl"
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    statements = [s for s, _ in _read_jsonl(path)]
    total = (manifest.get("totals") or {}).get("statements")
    if total not in (None, len(statements)):
        raise DataError(f"{path}: {len(statements)} statements, manifest.json says {total}")
    return Mixture(tuple(statements), manifest)

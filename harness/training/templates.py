"""Training-statement templates: ``templates/en.yaml`` and its translated copies ``templates/<lang>.yaml``.

A translated copy keeps the English ids and placeholders (checked here, so a slip in a translation fails loudly
instead of silently training on broken statements) and may add ``labels:`` (label name -> translation) and
``language_names:`` (language code -> name in that language). ``template_language="translated"`` uses the
statement's own language's file where one exists for the task type, else English; the choice is recorded per
statement.
"""

from __future__ import annotations

import hashlib
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness.errors import DataError, UsageError, one_line
from harness.languages import ENGLISH_NAMES
from harness.training.rows import TASK_TYPES

PACKAGED_DIR = Path(__file__).parent / "templates"

TEMPLATE_LANGUAGES: tuple[str, ...] = ("en", "translated")



@dataclass(frozen=True)
class TrainTemplate:
    id: str
    text: str
    slots: frozenset[str]


@dataclass(frozen=True)
class TemplateFile:
    """One parsed ``<lang>.yaml``: templates per task type plus the optional label/language-name maps."""

    language: str
    path: str
    sha256: str
    task_types: dict[str, tuple[TrainTemplate, ...]]
    labels: dict[str, dict[str, str]] = field(default_factory=dict)  # task type (or "*" for all) -> name -> text
    language_names: dict[str, str] = field(default_factory=dict)

    def label(self, task_type: str, name: str) -> str:
        """The label name as written in this file's language (English name when it has no translation)."""
        for key in (task_type, "*"):
            if name in self.labels.get(key, {}):
                return self.labels[key][name]
        return name

    def language_name(self, code: str) -> str:
        return self.language_names.get(code) or ENGLISH_NAMES.get(code, code)


def _slots(text: str) -> frozenset[str]:
    return frozenset(name for _, name, _, _ in string.Formatter().parse(text) if name)


def _is_str_map(value: object) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) and v.strip()
                                           for k, v in value.items())


def _str_map(path: Path, doc: dict[str, Any], key: str) -> dict[str, str]:
    value = doc.get(key) or {}
    if not _is_str_map(value):
        raise DataError(f"template file {path}: `{key}:` must map names to non-empty strings")
    return dict(value)


def _labels(path: Path, doc: dict[str, Any]) -> dict[str, dict[str, str]]:
    """``labels:`` either maps label names directly, or per task type (``{topic: {travel: ...}}``)."""
    value = doc.get("labels") or {}
    if _is_str_map(value):
        return {"*": dict(value)}
    if isinstance(value, dict) and all(k in TASK_TYPES and _is_str_map(v) for k, v in value.items()):
        return {k: dict(v) for k, v in value.items()}
    raise DataError(f"template file {path}: `labels:` must map label names (or task types, then label names) "
                    "to non-empty strings")


def parse_train_template_file(path: Path, reference: TemplateFile | None = None) -> TemplateFile:
    """Parse one file. Without ``reference`` (English) every task type is required; with it, the file may cover
    fewer task types, but each id must exist in English with the same placeholders."""
    try:
        raw = path.read_bytes()
        doc: Any = yaml.safe_load(raw)
    except OSError as err:
        raise DataError(f"template file {path}: cannot read ({err.strerror})") from err
    except yaml.YAMLError as err:
        raise DataError(f"template file {path}: invalid YAML ({one_line(err)})") from err
    if not isinstance(doc, dict) or not isinstance(doc.get("task_types"), dict):
        raise DataError(f"template file {path}: needs a `task_types:` mapping")
    language = str(doc.get("language", ""))
    if language != path.stem:
        raise DataError(f"template file {path}: `language:` is {language!r}, expected {path.stem!r}")
    parsed: dict[str, tuple[TrainTemplate, ...]] = {}
    for task_type, block in doc["task_types"].items():
        if task_type not in TASK_TYPES:
            raise DataError(f"template file {path}: unknown task type {task_type!r}")
        items = block.get("templates") if isinstance(block, dict) else None
        if not isinstance(items, list) or len(items) < 2:
            raise DataError(f"template file {path}: task type {task_type!r} needs at least 2 templates")
        templates: list[TrainTemplate] = []
        for i, item in enumerate(items):
            if not isinstance(item, dict) or not isinstance(item.get("id"), str):
                raise DataError(f"template file {path}: {task_type} template #{i + 1} needs an `id`")
            tid, text = item["id"], item.get("text")
            if not isinstance(text, str) or not text.strip():
                raise DataError(f"template file {path}: template {tid!r} needs a non-empty `text`")
            if any(t.id == tid for t in templates):
                raise DataError(f"template file {path}: duplicate template id {tid!r}")
            try:
                slots = _slots(text)
            except ValueError as err:
                raise DataError(f"template file {path}: template {tid!r}: bad braces ({err})") from err
            if reference is not None:
                english = {t.id: t for t in reference.task_types.get(task_type, ())}
                if tid not in english:
                    raise DataError(f"template file {path}: template {tid!r} is not an English {task_type} id")
                if slots != english[tid].slots:
                    raise DataError(f"template file {path}: template {tid!r} placeholders {sorted(slots)} "
                                    f"differ from English {sorted(english[tid].slots)}")
            templates.append(TrainTemplate(tid, text, slots))
        parsed[task_type] = tuple(templates)
    if reference is None and (missing := [t for t in TASK_TYPES if t not in parsed]):
        raise DataError(f"template file {path}: missing task type(s) {missing}")
    return TemplateFile(language=language, path=str(path), sha256=hashlib.sha256(raw).hexdigest(),
                        task_types=parsed, labels=_labels(path, doc),
                        language_names=_str_map(path, doc, "language_names"))


@dataclass(frozen=True)
class TrainTemplates:
    """The template files one build uses; ``pick`` decides per (task type, language)."""

    mode: str
    english: TemplateFile
    translated: dict[str, TemplateFile]

    def pick(self, task_type: str, language: str) -> TemplateFile:
        own = self.translated.get(language) if self.mode == "translated" else None
        return own if own is not None and task_type in own.task_types else self.english


def load_templates(mode: str = "en", languages: tuple[str, ...] = (), directory: Path | None = None) -> TrainTemplates:
    """English always; with ``mode="translated"`` also each of ``languages`` that has a file (missing = English)."""
    if mode not in TEMPLATE_LANGUAGES:
        raise UsageError(f"template_language {mode!r}: expected one of {', '.join(TEMPLATE_LANGUAGES)}")
    directory = directory or PACKAGED_DIR
    english = parse_train_template_file(directory / "en.yaml")
    translated: dict[str, TemplateFile] = {}
    if mode == "translated":
        for lang in languages:
            path = directory / f"{lang}.yaml"
            if lang != "en" and path.is_file():
                translated[lang] = parse_train_template_file(path, english)
    return TrainTemplates(mode=mode, english=english, translated=translated)


def templates_version(files: list[TemplateFile]) -> str:
    """sha256 over the (language, file sha256) pairs used: changes whenever any used template file changes."""
    digest = hashlib.sha256()
    for f in sorted({f.language: f for f in files}.values(), key=lambda f: f.language):
        digest.update(f"{f.language}:{f.sha256}\n".encode())
    return digest.hexdigest()

"""Load per-task statement templates from YAML data files (packaged, or a user's directory)."""

from __future__ import annotations

import hashlib
import json
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness.errors import UsageError, one_line
from harness.tasks.taskfile import TaskSpec

PACKAGED_DIR = Path(__file__).resolve().parent.parent / "tasks" / "builtin" / "templates"


@dataclass(frozen=True)
class Template:
    id: str
    group: str | None  # only drawn for examples whose `group_field` equals this
    text: str | None  # one text, with the candidate in `candidate_slot`
    per_candidate: tuple[str, ...] | None  # or one text per candidate (labels, e.g. XNLI)


@dataclass(frozen=True)
class TemplateSet:
    task: str
    version: int
    candidate_slot: str | None
    group_field: str | None
    templates: tuple[Template, ...]
    path: str
    sha256: str

    def eligible(self, group: str | None) -> tuple[Template, ...]:
        if self.group_field is None:
            return self.templates
        return tuple(t for t in self.templates if t.group == group)


def _slots(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


def _fail(path: Path, msg: str) -> UsageError:
    return UsageError(f"template file {path}: {msg}")


def parse_template_file(path: Path, task: str, fields: set[str], n_candidates: int | None) -> TemplateSet:
    """Parse and validate one task's template file: every slot must be a field the task provides."""
    try:
        raw = path.read_bytes()
        doc: Any = yaml.safe_load(raw)
    except OSError as err:
        raise _fail(path, f"cannot read ({err.strerror})") from err
    except yaml.YAMLError as err:
        raise _fail(path, f"invalid YAML ({one_line(err)})") from err
    if isinstance(doc, dict) and doc.get("task") != task:
        raise _fail(path, f"`task:` is {doc.get('task')!r}, expected {task!r}")
    return parse_template_doc(doc, raw, path, task, fields, n_candidates)


def parse_inline_templates(doc: dict[str, Any], path: Path, task: str, fields: set[str],
                           n_candidates: int | None) -> TemplateSet:
    """A task file's inline ``statements:`` block; its checksum is that of the block as canonical JSON."""
    raw = json.dumps(doc, sort_keys=True, ensure_ascii=False).encode("utf-8")
    return parse_template_doc(doc, raw, path, task, fields, n_candidates, where="statements")


def parse_template_doc(doc: Any, raw: bytes, path: Path, task: str, fields: set[str], n_candidates: int | None,
                       where: str | None = None) -> TemplateSet:
    def fail(msg: str) -> UsageError:
        return _fail(path, msg) if where is None else UsageError(f"task file {path}: {where}: {msg}")

    if not isinstance(doc, dict) or not isinstance(doc.get("templates"), list) or not doc["templates"]:
        raise fail("needs a non-empty `templates:` list")
    slot = doc.get("candidate_slot")
    group_field = doc.get("group_field")
    allowed = fields | ({slot} if slot else set())
    templates: list[Template] = []
    seen: set[str] = set()
    for i, item in enumerate(doc["templates"]):
        if not isinstance(item, dict) or "id" not in item:
            raise fail(f"template #{i + 1} needs an `id`")
        tid = str(item["id"])
        if tid in seen:
            raise fail(f"duplicate template id {tid!r}")
        seen.add(tid)
        text, per = item.get("text"), item.get("per_candidate")
        if (text is None) == (per is None):
            raise fail(f"template {tid!r} needs exactly one of `text` or `per_candidate`")
        if text is not None and not slot:
            raise fail(f"template {tid!r} uses `text` but the file has no `candidate_slot`")
        if per is not None and (not isinstance(per, list) or (n_candidates is not None
                                                              and len(per) != n_candidates)):
            raise fail(f"template {tid!r}: `per_candidate` needs {n_candidates} texts")
        texts: list[object] = [text] if per is None else list(per)
        for t in texts:
            if not isinstance(t, str):
                raise fail(f"template {tid!r}: texts must be strings")
            try:
                unknown = _slots(t) - allowed
            except ValueError as err:
                raise fail(f"template {tid!r}: bad braces ({err})") from err
            if unknown:
                raise fail(f"template {tid!r} uses unknown slot(s) {sorted(unknown)}; available: {sorted(allowed)}")
            if text is not None and slot not in _slots(t):
                raise fail(f"template {tid!r} never uses the candidate slot {{{slot}}}")
        group = item.get("group")
        if group_field and group is None:
            raise fail(f"template {tid!r} needs a `group` (the file selects by {group_field!r})")
        templates.append(Template(tid, str(group) if group is not None else None, text,
                                  tuple(per) if per is not None else None))
    return TemplateSet(task=task, version=int(doc.get("version", 1)), candidate_slot=slot,
                       group_field=group_field, templates=tuple(templates), path=str(path),
                       sha256=hashlib.sha256(raw).hexdigest())


def template_path(task: str, templates_dir: str | Path | None = None) -> Path | None:
    """A user's ``--templates-dir`` file for ``task``, or None (then the task file's own templates apply)."""
    if templates_dir is not None:
        directory = Path(templates_dir)
        if not directory.is_dir():
            raise UsageError(f"--templates-dir {directory}: not a directory")
        candidate = directory / f"{task}.yaml"
        if candidate.exists():
            return candidate
    return None


def task_templates(spec: TaskSpec, templates_dir: str | Path | None = None) -> TemplateSet:
    """The statement templates of a task: a ``--templates-dir`` override, the task's template file, or inline."""
    fields = set(spec.fields)
    override = template_path(spec.name, templates_dir)
    if override is not None:
        return parse_template_file(override, spec.name, fields, spec.n_candidates)
    if "file" in spec.statements:
        return parse_template_file(Path(spec.statements["file"]), spec.name, fields, spec.n_candidates)
    assert spec.path is not None
    return parse_inline_templates(dict(spec.statements), spec.path, spec.name, fields, spec.n_candidates)

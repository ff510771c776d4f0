"""Load per-task statement templates from YAML data files (packaged, or a user's directory)."""

from __future__ import annotations

import hashlib
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness.errors import UsageError

PACKAGED_DIR = Path(__file__).parent / "templates"


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


def parse_template_file(path: Path, task: str, fields: set[str], n_candidates: int) -> TemplateSet:
    """Parse and validate one task's template file: every slot must be a field the task provides."""
    try:
        raw = path.read_bytes()
        doc: Any = yaml.safe_load(raw)
    except OSError as err:
        raise _fail(path, f"cannot read ({err.strerror})") from err
    except yaml.YAMLError as err:
        raise _fail(path, f"invalid YAML ({str(err).splitlines()[0]})") from err
    if not isinstance(doc, dict) or not isinstance(doc.get("templates"), list) or not doc["templates"]:
        raise _fail(path, "needs a non-empty `templates:` list")
    if doc.get("task") != task:
        raise _fail(path, f"`task:` is {doc.get('task')!r}, expected {task!r}")
    slot = doc.get("candidate_slot")
    group_field = doc.get("group_field")
    allowed = fields | ({slot} if slot else set())
    templates: list[Template] = []
    seen: set[str] = set()
    for i, item in enumerate(doc["templates"]):
        if not isinstance(item, dict) or "id" not in item:
            raise _fail(path, f"template #{i + 1} needs an `id`")
        tid = str(item["id"])
        if tid in seen:
            raise _fail(path, f"duplicate template id {tid!r}")
        seen.add(tid)
        text, per = item.get("text"), item.get("per_candidate")
        if (text is None) == (per is None):
            raise _fail(path, f"template {tid!r} needs exactly one of `text` or `per_candidate`")
        if text is not None and not slot:
            raise _fail(path, f"template {tid!r} uses `text` but the file has no `candidate_slot`")
        if per is not None and (not isinstance(per, list) or len(per) != n_candidates):
            raise _fail(path, f"template {tid!r}: `per_candidate` needs {n_candidates} texts")
        texts: list[object] = [text] if per is None else list(per)
        for t in texts:
            if not isinstance(t, str):
                raise _fail(path, f"template {tid!r}: texts must be strings")
            try:
                unknown = _slots(t) - allowed
            except ValueError as err:
                raise _fail(path, f"template {tid!r}: bad braces ({err})") from err
            if unknown:
                raise _fail(path, f"template {tid!r} uses unknown slot(s) {sorted(unknown)}; "
                                  f"available: {sorted(allowed)}")
            if text is not None and slot not in _slots(t):
                raise _fail(path, f"template {tid!r} never uses the candidate slot {{{slot}}}")
        group = item.get("group")
        if group_field and group is None:
            raise _fail(path, f"template {tid!r} needs a `group` (the file selects by {group_field!r})")
        templates.append(Template(tid, str(group) if group is not None else None, text,
                                  tuple(per) if per is not None else None))
    return TemplateSet(task=task, version=int(doc.get("version", 1)), candidate_slot=slot,
                       group_field=group_field, templates=tuple(templates), path=str(path),
                       sha256=hashlib.sha256(raw).hexdigest())


def template_path(task: str, templates_dir: str | Path | None = None) -> Path:
    """A user's directory overrides the packaged file for the tasks it has a file for."""
    if templates_dir is not None:
        directory = Path(templates_dir)
        if not directory.is_dir():
            raise UsageError(f"--templates {directory}: not a directory")
        candidate = directory / f"{task}.yaml"
        if candidate.exists():
            return candidate
    return PACKAGED_DIR / f"{task}.yaml"

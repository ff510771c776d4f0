"""Which tasks exist: the built-in task files plus every task file under the ``--include-path`` directories."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from harness.errors import UsageError
from harness.tasks.taskfile import TaskSpec, parse_task_file

BUILTIN_DIR = Path(__file__).resolve().parent / "builtin"
IncludePaths = Sequence[str | Path]


@dataclass(frozen=True)
class TaskRegistry:
    tasks: dict[str, TaskSpec]
    include_paths: tuple[str, ...]

    def get(self, name: str) -> TaskSpec:
        spec = self.tasks.get(name)
        if spec is None:
            hint = "" if self.include_paths else " (add --include-path DIR for your own task files)"
            raise UsageError(f"unknown task {name!r}; choose from: {', '.join(self.tasks)}{hint}")
        return spec

    @property
    def builtin(self) -> tuple[str, ...]:
        return tuple(n for n, s in self.tasks.items() if s.path is not None and s.path.parent == BUILTIN_DIR)


def _is_task_file(path: Path) -> bool:
    """A YAML file with a top-level ``example:`` key (template files and lm-eval configs have none)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    return any(line.startswith("example:") for line in text.splitlines())


def task_files(directory: Path) -> list[Path]:
    if directory.is_file():
        return [directory]
    return sorted(p for p in directory.rglob("*.yaml") if p.is_file() and _is_task_file(p))


def _scan(dirs: Iterable[Path]) -> dict[str, TaskSpec]:
    tasks: dict[str, TaskSpec] = {}
    for d in dirs:
        for path in task_files(d):
            spec = parse_task_file(path)
            if spec.name in tasks and tasks[spec.name].path == spec.path:
                continue  # the same file reached twice (e.g. an include path inside the package)
            if spec.name in tasks:
                raise UsageError(f"task file {path}: task {spec.name!r} is already defined by {tasks[spec.name].path}")
            tasks[spec.name] = spec
    return tasks


_CACHE: dict[tuple[tuple[str, int, int], ...], TaskRegistry] = {}


def _stamp(dirs: list[Path]) -> tuple[tuple[str, int, int], ...]:
    out = []
    for d in dirs:
        for p in [d] if d.is_file() else sorted(d.rglob("*")):
            try:
                st = p.stat()
            except OSError:
                continue
            out.append((str(p), st.st_mtime_ns, st.st_size))
    return tuple(out)


def load_registry(include_paths: IncludePaths = ()) -> TaskRegistry:
    """Built-in tasks first, then the include paths in order; a task name defined twice is an error."""
    given = tuple(str(p) for p in include_paths)
    dirs = [BUILTIN_DIR]
    for p in given:
        path = Path(p).expanduser()
        if not path.exists():
            raise UsageError(f"--include-path {p}: no such file or directory")
        if path.is_file() and path.suffix not in (".yaml", ".yml"):
            raise UsageError(f"--include-path {p}: not a directory or a .yaml task file")
        dirs.append(path)
    key = (("#", len(given), 0), *_stamp(dirs))
    cached = _CACHE.get(key)
    if cached is None:
        try:
            cached = TaskRegistry(_scan(dirs), given)
        except yaml.YAMLError as err:  # pragma: no cover - parse_task_file reports YAML errors itself
            raise UsageError(f"--include-path: {err}") from None
        if len(_CACHE) > 32:
            _CACHE.clear()
        _CACHE[key] = cached
    _SEEN.update(cached.tasks)
    return cached


#: every task any registry of this process has loaded: a name found once (e.g. from --include-path) keeps
#: resolving in later steps of the same run (the bridge, the request builder) without passing paths around
_SEEN: dict[str, TaskSpec] = {}


def get_task(name: str | TaskSpec, include_paths: IncludePaths = ()) -> TaskSpec:
    if isinstance(name, TaskSpec):
        return name
    registry = load_registry(include_paths)
    if name not in registry.tasks and not include_paths and name in _SEEN:
        return _SEEN[name]
    return registry.get(name)


def find_task(name: str) -> TaskSpec | None:
    """A built-in task by name, or None (reports and plots use it for result files that predate titles)."""
    return load_registry().tasks.get(name)


def default_task() -> str:
    """The task a command uses when none is named: the first built-in task file (by file name)."""
    return load_registry().builtin[0]


def known_tasks() -> dict[str, TaskSpec]:
    """The built-in tasks plus every task any registry of this process has loaded."""
    return {**_SEEN, **load_registry().tasks}

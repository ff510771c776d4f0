"""Load `paper.yaml` into typed steps, checked up front so that a bad study file fails before any step runs.

Every error is one line naming the file and the key (``paper.yaml: steps[3] (eval-x).kind: ...``).
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from harness.errors import DataError

KINDS = ("train", "run", "efficiency", "report")
MODES = ("full", "stand-in")
OUT = "{out}"


@dataclass(frozen=True)
class TaskWorkload:
    """Size of one eval task for the plan's estimate (all languages of its default split)."""

    examples: int
    rows_per_example: int
    statement_tokens: float
    statement_max: int
    causal_tokens: float
    causal_max: int


@dataclass(frozen=True)
class Assumptions:
    """The plan's planning assumptions, stated in its output."""

    utilisation: float
    load_gb_per_s: float
    vllm_start_s: float
    batch_overhead_s: float
    train_step_overhead_s: float
    efficiency_seconds_per_model: float
    efficiency_models: int
    train_mean_tokens: float
    train_padded_tokens: float
    tasks: Mapping[str, TaskWorkload]


@dataclass(frozen=True)
class Step:
    id: str
    kind: str
    title: str
    args: str  # the full-study command line, "bench <kind> ...", with {out}
    depends_on: tuple[str, ...] = ()
    needs_hub: tuple[str, ...] = ()
    stand_in: str | None = None  # the stand-in command line, or None: not part of the stand-in
    model: str | None = None  # preset the step's cost is estimated for (default: its --model)
    statements: int | None = None  # train steps: mixture size, for the estimate
    compare: str | None = None  # published row (reference table) this step reproduces

    def command(self, mode: str, out: str) -> str:
        """The command line of this step in `mode`, with {out} filled in."""
        text = self.args if mode == "full" else self.stand_in
        if text is None:
            raise DataError(f"step {self.id} has no stand-in command")
        return " ".join(text.split()).replace(OUT, shlex.quote(out))

    def argv(self, mode: str, out: str) -> list[str]:
        """The command's arguments after `bench` (e.g. ["train", "--model", ...])."""
        return shlex.split(self.command(mode, out))[1:]


@dataclass(frozen=True)
class Study:
    name: str
    title: str
    steps: tuple[Step, ...]  # in dependency order
    stand_in_size: str
    output: str
    stand_in_output: str
    assumptions: Assumptions
    source: str  # where it was read from

    def steps_for(self, mode: str) -> tuple[Step, ...]:
        return self.steps if mode == "full" else tuple(s for s in self.steps if s.stand_in is not None)

    def default_output(self, mode: str) -> str:
        return self.output if mode == "full" else self.stand_in_output


class _Reader:
    """Typed field access with errors that name the file and the key."""

    def __init__(self, name: str) -> None:
        self.name = name

    def fail(self, where: str, message: str) -> DataError:
        return DataError(f"{self.name}: {where}: {message}")

    def mapping(self, value: Any, where: str) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(where, f"expected a mapping, got {type(value).__name__}")
        return value

    def get(self, obj: Mapping[str, Any], key: str, tp: type | tuple[type, ...], where: str,
            default: Any = ...) -> Any:
        if key not in obj:
            if default is ...:
                raise self.fail(f"{where}.{key}" if where else key, "missing")
            return default
        value = obj[key]
        bad_bool = isinstance(value, bool) and bool not in (tp if isinstance(tp, tuple) else (tp,))
        if not isinstance(value, tp) or bad_bool:
            names = "/".join(t.__name__ for t in (tp if isinstance(tp, tuple) else (tp,)))
            raise self.fail(f"{where}.{key}" if where else key, f"expected {names}, got {value!r}")
        return value

    def strings(self, obj: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
        value = self.get(obj, key, list, where, default=[])
        if not all(isinstance(v, str) and v for v in value):
            raise self.fail(f"{where}.{key}", "expected a list of non-empty strings")
        return tuple(value)


def _command(reader: _Reader, text: str, kind: str, where: str) -> str:
    try:
        words = shlex.split(text)
    except ValueError as err:
        raise reader.fail(where, f"unparsable command line ({err})") from None
    if words[:2] != ["bench", kind]:
        raise reader.fail(where, f"must start with 'bench {kind}' (got {' '.join(words[:2])!r})")
    if OUT not in text:
        raise reader.fail(where, f"must write under {OUT} (the study's --output)")
    return text


def _step(reader: _Reader, raw: Any, where: str) -> Step:
    obj = reader.mapping(raw, where)
    known = {"id", "kind", "title", "args", "depends_on", "needs_hub", "stand_in", "model", "statements", "compare"}
    extra = sorted(set(obj) - known)
    if extra:
        raise reader.fail(f"{where}.{extra[0]}", f"unknown key (known: {', '.join(sorted(known))})")
    step_id = reader.get(obj, "id", str, where)
    where = f"{where} ({step_id})"
    kind = reader.get(obj, "kind", str, where)
    if kind not in KINDS:
        raise reader.fail(f"{where}.kind", f"{kind!r} is not one of {', '.join(KINDS)}")
    stand_in = reader.get(obj, "stand_in", str, where, default=None)
    statements = reader.get(obj, "statements", int, where, default=None)
    if kind == "train" and (statements is None or statements < 1):
        raise reader.fail(f"{where}.statements", "a train step needs its mixture size (a positive integer)")
    return Step(
        id=step_id, kind=kind, title=reader.get(obj, "title", str, where),
        args=_command(reader, reader.get(obj, "args", str, where), kind, f"{where}.args"),
        depends_on=reader.strings(obj, "depends_on", where), needs_hub=reader.strings(obj, "needs_hub", where),
        stand_in=None if stand_in is None else _command(reader, stand_in, kind, f"{where}.stand_in"),
        model=reader.get(obj, "model", str, where, default=None), statements=statements,
        compare=reader.get(obj, "compare", str, where, default=None))


def _ordered(reader: _Reader, steps: Sequence[Step]) -> tuple[Step, ...]:
    """Steps in dependency order (stable: file order where free); unknown ids and cycles are errors."""
    by_id: dict[str, Step] = {}
    for i, step in enumerate(steps):
        if step.id in by_id:
            raise reader.fail(f"steps[{i}].id", f"{step.id!r} appears twice")
        by_id[step.id] = step
    for step in steps:
        for dep in step.depends_on:
            if dep not in by_id:
                raise reader.fail(f"steps ({step.id}).depends_on", f"unknown step {dep!r}")
    done: list[Step] = []
    placed: set[str] = set()
    pending = list(steps)
    while pending:
        ready = next((s for s in pending if set(s.depends_on) <= placed), None)
        if ready is None:
            raise reader.fail("steps", "depends_on forms a cycle among " + ", ".join(s.id for s in pending))
        done.append(ready)
        placed.add(ready.id)
        pending.remove(ready)
    return tuple(done)


def _assumptions(reader: _Reader, raw: Any) -> Assumptions:
    obj = reader.mapping(raw, "estimates")
    num = (int, float)
    train = reader.mapping(reader.get(obj, "train", dict, "estimates"), "estimates.train")
    tasks_raw = reader.mapping(reader.get(obj, "tasks", dict, "estimates"), "estimates.tasks")
    tasks: dict[str, TaskWorkload] = {}
    for name, value in tasks_raw.items():
        where = f"estimates.tasks.{name}"
        t = reader.mapping(value, where)
        tasks[str(name)] = TaskWorkload(
            examples=reader.get(t, "examples", int, where),
            rows_per_example=reader.get(t, "rows_per_example", int, where),
            statement_tokens=float(reader.get(t, "statement_tokens", num, where)),
            statement_max=reader.get(t, "statement_max", int, where),
            causal_tokens=float(reader.get(t, "causal_tokens", num, where)),
            causal_max=reader.get(t, "causal_max", int, where))
    utilisation = float(reader.get(obj, "utilisation", num, "estimates"))
    if not 0 < utilisation <= 1:
        raise reader.fail("estimates.utilisation", f"must be in (0, 1], got {utilisation}")
    return Assumptions(
        utilisation=utilisation, load_gb_per_s=float(reader.get(obj, "load_gb_per_s", num, "estimates")),
        vllm_start_s=float(reader.get(obj, "vllm_start_s", num, "estimates")),
        batch_overhead_s=float(reader.get(obj, "batch_overhead_s", num, "estimates")),
        train_step_overhead_s=float(reader.get(obj, "train_step_overhead_s", num, "estimates")),
        efficiency_seconds_per_model=float(reader.get(obj, "efficiency_seconds_per_model", num, "estimates")),
        efficiency_models=reader.get(obj, "efficiency_models", int, "estimates"),
        train_mean_tokens=float(reader.get(train, "mean_tokens", num, "estimates.train")),
        train_padded_tokens=float(reader.get(train, "padded_tokens", num, "estimates.train")), tasks=tasks)


def parse_study(data: Any, name: str) -> Study:
    """A study from the parsed YAML document `data` (`name` is used in error messages)."""
    reader = _Reader(name)
    doc = reader.mapping(data, "top level")
    steps_raw = reader.get(doc, "steps", list, "")
    if not steps_raw:
        raise reader.fail("steps", "no steps")
    steps = _ordered(reader, [_step(reader, raw, f"steps[{i}]") for i, raw in enumerate(steps_raw)])
    stand_in = reader.mapping(reader.get(doc, "stand_in", dict, ""), "stand_in")
    study = Study(name=reader.get(doc, "name", str, ""), title=reader.get(doc, "title", str, ""), steps=steps,
                  stand_in_size=" ".join(reader.get(stand_in, "size", str, "stand_in").split()),
                  output=reader.get(doc, "output", str, ""),
                  stand_in_output=reader.get(stand_in, "output", str, "stand_in"),
                  assumptions=_assumptions(reader, reader.get(doc, "estimates", dict, "")), source=name)
    if not study.steps_for("stand-in"):
        raise reader.fail("steps", "no step has a stand_in command")
    return study


def load_study(path: str | Path | None = None) -> Study:
    """The packaged study (`harness/reproduce/paper.yaml`) or a study file at `path`."""
    import yaml

    if path is None:
        name = "harness/reproduce/paper.yaml"
        text = resources.files("harness.reproduce").joinpath("paper.yaml").read_text(encoding="utf-8")
    else:
        name = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise DataError(f"{name}: cannot read ({getattr(err, 'strerror', None) or err})") from err
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise DataError(f"{name}: invalid YAML{at} ({getattr(err, 'problem', None) or 'parse error'})") from None
    return parse_study(data, name)

"""The run result file (schema-versioned JSON): what was run, on what, and the metrics per task x language."""

from __future__ import annotations

import copy
import json
import math
import os
import tempfile
import types
from collections.abc import Callable, Iterator, Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

from harness.errors import DataError

#: 1.1: optional acc_norm (causal LMs); 1.2: optional efficiency record; 1.3: task title, chance and task file;
#: 1.4: world_size (data-parallel processes that scored the run). Readers accept 1.x
SCHEMA_VERSION = "1.4"
RESULT_FILE = "result.json"
SAMPLES_FILE = "samples.jsonl"


@dataclass
class LanguageResult:
    language: str
    n: int  # examples scored
    n_rows: int  # rows in the split (before --limit)
    accuracy: float
    stderr: float
    ci95_low: float
    ci95_high: float
    truncated: int  # statements cut to the model's input limit
    data_source: str
    data_location: str
    data_sha256: str | None
    data_derived: bool
    acc_norm: float | None = None  # lm-eval's length-normalised accuracy (causal LMs)
    acc_norm_stderr: float | None = None


@dataclass
class TaskResult:
    task: str
    split: str
    metric: str
    languages: dict[str, LanguageResult]
    mean_accuracy: float  # unweighted mean over languages
    mean_stderr: float
    mean_ci95_low: float
    mean_ci95_high: float
    n_languages: int
    n_examples: int
    templates: dict[str, Any] = field(default_factory=dict)  # path, version, sha256
    prompt: str = "statements"  # request format: statements (verbalizer templates) or lm-eval-0.4.13
    mean_acc_norm: float | None = None
    mean_acc_norm_ci95_low: float | None = None
    mean_acc_norm_ci95_high: float | None = None
    title: str | None = None  # the task file's display name (1.3)
    chance: float | None = None  # chance accuracy (%) from the number of candidates (1.3)
    task_file: dict[str, Any] | None = None  # path and sha256 of the task file (1.3)
    #: `--templates all` only: accuracy per template, mean and spread (harness.results.sensitivity); additive, 1.3
    template_sensitivity: dict[str, Any] | None = None


@dataclass
class RunResult:
    schema_version: str
    run_id: str
    config: dict[str, Any]
    model: dict[str, Any]
    environment: dict[str, Any]
    tasks: dict[str, TaskResult]
    samples_file: str
    timing: dict[str, Any] = field(default_factory=dict)  # the only part that differs between equal runs
    efficiency: dict[str, Any] | None = None  # `bench efficiency` record (then `tasks` is empty, no samples file)
    #: processes that scored the run (`bench run` under torchrun / accelerate launch). Not in the identity:
    #: a run resumes with another process count. Left out of the file when None (efficiency records, older files)
    world_size: int | None = None


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan_to_none(v) for v in value]
    return value


def result_to_dict(result: RunResult | EvalRecord | EfficiencyRecord) -> dict[str, Any]:
    """The file's JSON object (NaN written as null); a read record gives back the `RunResult` it was read from."""
    if not isinstance(result, RunResult):
        result = result.to_result()
    out = dict(_nan_to_none(asdict(result)))
    if out["world_size"] is None:  # efficiency records and files written before it stay as they were
        del out["world_size"]
    return out


def _none_to_nan(value: Any) -> float:
    return math.nan if value is None else float(value)


# -- reading: typed records, one validating reader -------------------------------------------------------------------
#
# The writers build `RunResult` (above) and the file is `asdict` of it, byte for byte as before. The reading side is
# typed: `read_result` / `record_from_dict` give an `EvalRecord` (accuracy run) or an `EfficiencyRecord`
# (`bench efficiency`), whose parts are typed sub-records (`SubRecord`: declared fields validated, unknown keys kept
# and still readable as a mapping). A field of the wrong shape fails with one line: "<file>: <field>: expected ...".


class MalformedField(Exception):
    """A field that does not have the expected shape; the reader turns it into a one-line DataError."""

    def __init__(self, field_path: str, message: str) -> None:
        super().__init__(f"{field_path}: {message}")
        self.field_path = field_path
        self.message = message


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _got(value: Any) -> str:
    text = "null" if value is None else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check(value: Any, tp: Any, where: str) -> Any:
    """`value` if it has type `tp` (a sub-record / dataclass: parsed into one), else MalformedField at `where`."""
    if tp is Any:
        return value
    origin = get_origin(tp)
    if origin is Union or origin is types.UnionType:
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        rest = [a for a in args if a is not type(None)]
        if len(rest) > 1:
            raise TypeError(f"{where}: unsupported union {tp!r}")
        return _check(value, rest[0], where)
    if origin is dict:
        if not isinstance(value, dict):
            raise MalformedField(where, f"expected an object, got {_got(value)}")
        _, item = get_args(tp)
        return {k: _check(v, item, _join(where, str(k))) for k, v in value.items()}
    if origin is list:
        if not isinstance(value, list):
            raise MalformedField(where, f"expected a list, got {_got(value)}")
        (item,) = get_args(tp)
        return [_check(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(tp, type) and issubclass(tp, SubRecord):
        return tp.parse(value, where)
    if isinstance(tp, type) and is_dataclass(tp):
        return _parse_dataclass(tp, value, where)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise MalformedField(where, f"expected a number, got {_got(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise MalformedField(where, f"expected an integer, got {_got(value)}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise MalformedField(where, f"expected true or false, got {_got(value)}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise MalformedField(where, f"expected a string, got {_got(value)}")
        return value
    raise TypeError(f"{where}: unsupported field type {tp!r}")


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MalformedField(where or "(file)", f"expected an object, got {_got(value)}")
    return value


#: float fields written as null for NaN (`_nan_to_none`), read back as NaN
_NAN_FIELDS: dict[type, tuple[str, ...]] = {
    LanguageResult: ("accuracy", "stderr", "ci95_low", "ci95_high"),
    TaskResult: ("mean_accuracy", "mean_stderr", "mean_ci95_low", "mean_ci95_high"),
}


def _parse_dataclass(cls: type[_T], value: Any, where: str) -> _T:
    """A LanguageResult / TaskResult: required fields must be there; keys this version does not know (a newer 1.x)
    are left out."""
    d = _object(value, where)
    hints = get_type_hints(cls)
    nan_fields = _NAN_FIELDS.get(cls, ())
    kwargs: dict[str, Any] = {}
    for f in fields(cls):  # type: ignore[arg-type]
        here = _join(where, f.name)
        if f.name not in d:
            if f.default is MISSING and f.default_factory is MISSING:
                raise MalformedField(here, "missing")
            continue
        v = d[f.name]
        if f.name in nan_fields:
            v = math.nan if v is None else _check(v, float, here)
            kwargs[f.name] = float(v)
            continue
        kwargs[f.name] = _check(v, hints[f.name], here)
    return cls(**kwargs)


_T = TypeVar("_T")
_S = TypeVar("_S", bound="SubRecord")


@dataclass(eq=False)
class SubRecord(Mapping[str, Any]):
    """A JSON object read into typed fields: each declared field is checked (absent = its default), unknown keys
    are kept (`extra`), and the object still reads as the mapping it came from (``r["key"]``, ``r.get``, ``==`` a
    dict), so that code written against the dicts keeps working. `to_dict` gives the object back as read."""

    extra: dict[str, Any] = field(default_factory=dict, repr=False)
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def _declared(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls) if f.name not in ("extra", "raw"))

    @classmethod
    def parse(cls: type[_S], value: Any, where: str = "") -> _S:
        d = _object(value, where)
        hints = get_type_hints(cls)
        declared = cls._declared()
        kwargs = {k: _check(d[k], hints[k], _join(where, k)) for k in declared if k in d}
        return cls(**kwargs, extra={k: v for k, v in d.items() if k not in declared}, raw=d)

    def to_dict(self) -> dict[str, Any]:
        return copy.deepcopy(self.raw)

    def __getitem__(self, key: str) -> Any:
        if key in self.raw and key in self._declared():
            return getattr(self, key)
        return self.raw[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.raw)

    def __len__(self) -> int:
        return len(self.raw)


@dataclass(eq=False)
class ModelInfo(SubRecord):
    """`result["model"]`: what was scored (the backend's own info; efficiency records add weights and kind)."""

    backend: str | None = None
    model: str | None = None
    adapter: str | None = None
    base_model: str | None = None
    num_parameters: float | None = None
    device: str | None = None
    dtype: str | None = None
    training: dict[str, Any] | None = None  # the training recipe of a statement-tuned model
    notes: list[str] | None = None
    weights: str | None = None  # efficiency records
    kind: str | None = None  # efficiency records


@dataclass(eq=False)
class RunConfig(SubRecord):
    """`result["config"]`: the command's settings (the essentials typed, the rest in `extra`)."""

    command: str | None = None  # "efficiency" for efficiency records
    backend: str | None = None
    model: str | None = None
    tasks: list[str] | None = None
    limit: int | None = None
    seed: int | None = None
    identity: dict[str, Any] | None = None


@dataclass(eq=False)
class Environment(SubRecord):
    """`result["environment"]`: software and hardware the run saw."""

    python: str | None = None
    platform: str | None = None
    packages: dict[str, Any] | None = None
    cpu: str | None = None
    device: str | None = None
    dtype: str | None = None
    attention_implementation: str | None = None
    torch_threads: int | None = None
    cuda_version: Any = None
    cuda_driver: Any = None


@dataclass(eq=False)
class EfficiencyModel(SubRecord):
    model: str | None = None
    dtype: str | None = None


@dataclass(eq=False)
class DeviceProfileInfo(SubRecord):
    """The device profile the ceilings come from (`harness.efficiency.profiles.DeviceProfile`)."""

    key: str | None = None
    name: str | None = None
    memory_bytes: float | None = None
    bandwidth_bytes_per_s: float | None = None
    peak_flops: dict[str, float | None] | None = None
    measured: bool | None = None


@dataclass(eq=False)
class MeasuredPeaks(SubRecord):
    peak_flops: dict[str, float | None] | None = None
    bandwidth_bytes_per_s: float | None = None


@dataclass(eq=False)
class DeviceInfo(SubRecord):
    profile: DeviceProfileInfo = field(default_factory=DeviceProfileInfo)
    measured_peaks: MeasuredPeaks | None = None


@dataclass(eq=False)
class Probe(SubRecord):
    batch_size: int | None = None
    fits: bool | None = None
    peak_bytes: float | None = None


@dataclass(eq=False)
class MaxBatch(SubRecord):
    max_batch: int | None = None
    max_pow2: int | None = None
    stop_reason: str | None = None
    limit_bytes: float | None = None
    probes: list[Probe] = field(default_factory=list)


@dataclass(eq=False)
class Latency(SubRecord):
    p50: float | None = None
    p90: float | None = None
    p99: float | None = None
    stdev: float | None = None


@dataclass(eq=False)
class PeakMemory(SubRecord):
    torch_reserved: float | None = None
    rss: float | None = None


@dataclass(eq=False)
class Energy(SubRecord):
    joules_per_1k_examples: float | None = None
    reason: str | None = None


@dataclass(eq=False)
class ThroughputPoint(SubRecord):
    """One measured batch size (or, with `error`, one that failed)."""

    batch_size: int | None = None
    label: str | None = None
    error: str | None = None
    examples_per_s: float | None = None
    rows_per_s: float | None = None
    tokens_per_s: float | None = None
    padded_tokens_per_s: float | None = None
    latency_s: Latency = field(default_factory=Latency)
    first_call_s: float | None = None
    iterations: int | None = None
    flops_per_s: float | None = None
    peak_flops: float | None = None
    pct_of_peak: float | None = None
    energy: Energy | None = None  # None: a record made before energy was read
    peak_memory: PeakMemory = field(default_factory=PeakMemory)


@dataclass(eq=False)
class EstimatedPoint(SubRecord):
    batch_size: int | None = None
    label: str | None = None
    examples_per_s: float | None = None
    padded_tokens_per_s: float | None = None
    seconds_per_batch: float | None = None
    bound: str | None = None


@dataclass(eq=False)
class MemoryModel(SubRecord):
    weights_bytes: float | None = None
    per_row_bytes: float | None = None


@dataclass(eq=False)
class EstimatedMaxBatch(SubRecord):
    max_batch: int | None = None
    max_pow2: int | None = None


@dataclass(eq=False)
class Estimate(SubRecord):
    """The analytic estimate (roofline ceilings and the memory model's max batch)."""

    max_batch: EstimatedMaxBatch | None = None
    memory_model: MemoryModel = field(default_factory=MemoryModel)
    throughput: list[EstimatedPoint] = field(default_factory=list)


@dataclass(eq=False)
class WorkloadInfo(SubRecord):
    probe_length: int | None = None
    tokenizer: str | None = None


@dataclass(eq=False)
class CostInfo(SubRecord):
    parameters: float | None = None
    flops_per_token_at_mean: float | None = None


@dataclass(eq=False)
class EfficiencyMeasurements(SubRecord):
    """`result["efficiency"]`: one model's `bench efficiency` record (`harness.efficiency.measure`)."""

    model: EfficiencyModel = field(default_factory=EfficiencyModel)
    weights: str | None = None
    kind: str | None = None
    device: DeviceInfo = field(default_factory=DeviceInfo)
    workload: WorkloadInfo = field(default_factory=WorkloadInfo)
    cost: CostInfo = field(default_factory=CostInfo)
    max_batch: MaxBatch | None = None
    throughput: list[ThroughputPoint] = field(default_factory=list)
    estimate: Estimate | None = None


@dataclass(eq=False)
class TemplateCell(SubRecord):
    accuracy: float | None = None  # None: the template scored no example of this language
    n: int | None = None


@dataclass(eq=False)
class LanguageSensitivity(SubRecord):
    """One language of a `--templates all` block: per template accuracy and n, statistics over templates."""

    templates: dict[str, TemplateCell] = field(default_factory=dict)
    n_templates: int | None = None
    mean: float | None = None
    min: float | None = None
    max: float | None = None
    spread: float | None = None
    std: float | None = None
    ensemble_accuracy: float | None = None
    n: int | None = None


@dataclass(eq=False)
class SensitivitySummary(SubRecord):
    """Per task: each template's mean accuracy over languages, and the statistics over those means."""

    templates: dict[str, float | None] = field(default_factory=dict)
    n_languages: int | None = None
    mean: float | None = None
    min: float | None = None
    max: float | None = None
    spread: float | None = None
    std: float | None = None
    language_mean: dict[str, float | None] | None = None


@dataclass(eq=False)
class TemplateSensitivity(SubRecord):
    """A task's `template_sensitivity` block (`harness.results.sensitivity`), typed."""

    ensemble_rule: str | None = None
    std: str | None = None  # the std rule ("population (ddof=0) over templates")
    group_field: str | None = None
    groups: dict[str, str | None] | None = None
    note: str | None = None
    languages: dict[str, LanguageSensitivity] = field(default_factory=dict)
    summary: SensitivitySummary = field(default_factory=SensitivitySummary)


@dataclass
class EvalRecord:
    """An accuracy run's result file (`bench run`)."""

    schema_version: str
    run_id: str
    config: RunConfig
    model: ModelInfo
    environment: Environment
    tasks: dict[str, TaskResult]
    samples_file: str
    timing: dict[str, Any] = field(default_factory=dict)
    #: per task with a `--templates all` block: that block, typed (the task's own `template_sensitivity` is the
    #: block as written)
    template_sensitivity: dict[str, TemplateSensitivity] = field(default_factory=dict)
    world_size: int | None = None  # data-parallel processes that scored it (None in older files)

    def to_result(self) -> RunResult:
        return RunResult(self.schema_version, self.run_id, self.config.to_dict(), self.model.to_dict(),
                         self.environment.to_dict(), self.tasks, self.samples_file, dict(self.timing), None,
                         self.world_size)


@dataclass
class EfficiencyRecord:
    """A `bench efficiency` result file: one model's measurements (no tasks, no samples)."""

    schema_version: str
    run_id: str
    config: RunConfig
    model: ModelInfo
    environment: Environment
    efficiency: EfficiencyMeasurements
    samples_file: str = ""
    timing: dict[str, Any] = field(default_factory=dict)

    def to_result(self) -> RunResult:
        return RunResult(self.schema_version, self.run_id, self.config.to_dict(), self.model.to_dict(),
                         self.environment.to_dict(), {}, self.samples_file, dict(self.timing),
                         self.efficiency.to_dict())


ResultRecord = EvalRecord | EfficiencyRecord


def _migrate(d: dict[str, Any]) -> dict[str, Any]:
    """Any 1.x file in the current (1.4) shape; the one place that knows the older versions. 1.0 had no acc_norm
    (1.1), no efficiency record (1.2), no task title / chance / task file (1.3), no world_size (1.4): the absent
    fields take their defaults (None), and a file without timing gets an empty one."""
    out = dict(d)
    out.setdefault("timing", {})
    out.setdefault("efficiency", None)
    out.setdefault("world_size", None)
    return out


def record_from_dict(d: Any, where: str = "result") -> ResultRecord:
    """THE reader: a result file's JSON object -> EvalRecord, or EfficiencyRecord where it holds an efficiency
    record. Any 1.x version; a field of the wrong shape is a one-line DataError naming `where` and the field."""
    if not isinstance(d, dict):
        raise DataError(f"{where}: not a statement-bench result file")
    version = d.get("schema_version")
    if not isinstance(version, str) or version.split(".")[0] != SCHEMA_VERSION.split(".")[0]:
        raise DataError(f"{where}: schema_version {version!r} is not supported (this bench reads {SCHEMA_VERSION})")
    d = _migrate(d)
    try:
        for key in ("run_id", "config", "model", "environment", "tasks", "samples_file"):
            if key not in d:
                raise MalformedField(key, "missing")
        common: dict[str, Any] = {
            "schema_version": version, "run_id": _check(d["run_id"], str, "run_id"),
            "config": RunConfig.parse(d["config"], "config"), "model": ModelInfo.parse(d["model"], "model"),
            "environment": Environment.parse(d["environment"], "environment"),
            "samples_file": _check(d["samples_file"], str, "samples_file"),
            "timing": _check(d["timing"], dict[str, Any], "timing")}
        tasks = _check(d["tasks"], dict[str, TaskResult], "tasks")
        if d["efficiency"]:
            if tasks:
                raise MalformedField("efficiency", "an efficiency record must have no tasks")
            return EfficiencyRecord(**common, efficiency=EfficiencyMeasurements.parse(d["efficiency"], "efficiency"))
        if d["efficiency"] is not None:
            _object(d["efficiency"], "efficiency")
        sensitivity = {name: TemplateSensitivity.parse(tr.template_sensitivity, f"tasks.{name}.template_sensitivity")
                       for name, tr in tasks.items() if tr.template_sensitivity}
        world_size = _check(d["world_size"], int | None, "world_size")
        if world_size is not None and world_size < 1:
            raise MalformedField("world_size", f"expected a positive number of processes, got {world_size!r}")
        return EvalRecord(**common, tasks=tasks, template_sensitivity=sensitivity, world_size=world_size)
    except MalformedField as err:
        raise DataError(f"{where}: {err.field_path}: {err.message}") from None


def as_record(result: RunResult | ResultRecord) -> ResultRecord:
    """A typed record of an in-memory result (what `bench run` / `bench efficiency` just wrote): through the one
    reader, as if read from its file."""
    if isinstance(result, EvalRecord | EfficiencyRecord):
        return result
    as_written = json.loads(json.dumps(result_to_dict(result), ensure_ascii=False))  # tuples -> lists, as in the file
    return record_from_dict(as_written, where=f"result {result.run_id}")


def result_from_dict(d: dict[str, Any], where: str = "result") -> RunResult:
    """The writer's `RunResult` of a file's object (validated by `record_from_dict`): ``result_to_dict`` of it is
    the object again."""
    return record_from_dict(d, where).to_result()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json_atomic(path: Path, payload: dict[str, Any], *, default: Callable[[Any], Any] | None = None) -> None:
    """Write to a temp file in the same directory, fsync, then rename: readers never see half a file, and a
    visible file's bytes are on disk (a checkpoint's commit marker relies on that). ``default`` as json.dump's."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(payload, fh, ensure_ascii=False, indent=2, default=default)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; a result file is as readable as any other
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_result(path: Path, result: RunResult) -> None:
    write_json_atomic(path, result_to_dict(result))


def read_json_object(path: Path, what: str) -> dict[str, Any]:
    """A JSON object from a file, or a one-line DataError naming the file (unreadable, not JSON, not an
    object: then "not a <what>")."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise DataError(f"{path}: cannot read ({err.strerror})") from err
    except ValueError as err:
        raise DataError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(doc, dict):
        raise DataError(f"{path}: not a {what}")
    return doc


def read_result(path: Path) -> ResultRecord:
    """A result file as its typed record (see `record_from_dict`); every error is one line naming the file."""
    return record_from_dict(read_json_object(path, "statement-bench result file"), where=str(path))


def read_eval(path: Path) -> EvalRecord:
    """`read_result` of a file that must be an accuracy run."""
    record = read_result(path)
    if not isinstance(record, EvalRecord):
        raise DataError(f"{path}: an efficiency record, not an accuracy run")
    return record


def find_result_files(paths: list[Path]) -> list[Path]:
    """Expand directories (recursively) into result.json files; keep explicit files as given."""
    found: list[Path] = []
    for p in paths:
        if p.is_dir():
            found.extend(sorted(p.rglob(RESULT_FILE)))
        elif p.exists():
            found.append(p)
        else:
            raise DataError(f"{p}: no such result file or directory")
    return found

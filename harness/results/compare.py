"""Compare two runs sample by sample, and check efficiency and training records: the logic behind
``benchmarks/gpu_check.py``, kept here (pure Python, no torch) so that CI tests it on two CPU runs.

A GPU path is proved by scoring the same examples twice, once on the path under test (the *candidate*: hf on
CUDA, vLLM, the encoder on CUDA) and once on a trusted one (the *reference*: the same backend on CPU in fp32),
then pairing the samples by example id. The figures are the per-sample max |Δ score| over candidates,
prediction agreement and the unpaired ids; a verdict compares them with a `ScoreTolerance`.

Efficiency and training records are checked for what makes them a measurement rather than a number: a max batch
found by running out of memory and bracketed exactly, probe peaks that grow with the batch, an estimate next to
the measurement, the device it ran on; a training run that did all its steps and evaluated.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from harness.core import Sample
from harness.errors import DataError
from harness.results.samples import parse_sample_lines
from harness.results.schema import RESULT_FILE, SAMPLES_FILE, EvalRecord, read_json_object, read_result

Status = Literal["PASS", "FAIL"]
IdRule = Literal["same", "subset"]


@dataclass(frozen=True)
class Verdict:
    """PASS, or FAIL with one reason per broken condition (all of them, not just the first)."""

    reasons: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return not self.reasons

    @property
    def status(self) -> Status:
        return "PASS" if self.passed else "FAIL"

    def __str__(self) -> str:
        return self.status if self.passed else f"FAIL: {'; '.join(self.reasons)}"


# -- tolerances --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScoreTolerance:
    """How far a candidate's scores may be from the reference's: per candidate score
    ``|Δ| <= atol + rtol * max(|reference|, |candidate|)``, and at least ``min_agreement`` of the paired examples
    must get the same prediction."""

    name: str
    atol: float
    rtol: float = 0.0
    min_agreement: float = 0.98

    def allowed(self, reference: float, candidate: float) -> float:
        return self.atol + self.rtol * max(abs(reference), abs(candidate))

    def describe(self) -> str:
        rel = f" + {self.rtol:g}·|score|" if self.rtol else ""
        return f"abs Δ <= {self.atol:g}{rel}, agreement >= {self.min_agreement:g}"


# Summed continuation log-likelihoods (nats), fp32 on both sides. The same fp32 weights on CUDA and CPU differ
# only in reduction order (matmul tiling, SDPA kernels, a log-softmax over a 262k vocabulary), about 1e-5
# relative per logit, so a few hundredths of a nat over a whole continuation is already generous; real bugs
# (a shifted position, a lost token, padding leaking into attention) move a sum by whole nats. Agreement can
# only change on near-ties (margin <= 2 * atol), which are rare: 0.98 allows one flip in 50 examples.
LOGLIK_FP32 = ScoreTolerance("loglik-fp32", atol=0.05, min_agreement=0.98)
# bf16 logits carry 8 significant bits (a step of 0.125 at |logit| ~ 20) and every layer rounds its
# activations, so a sum over tens of tokens can drift by a nat or more, growing with the sum's size (rtol).
# Near-ties then flip; a broken path scores at chance level (0.5 agreement on two choices), far below 0.90.
# Measured on CPU (bf16 autocast vs fp32, gemma3-270m, 90 examples of the 4 tasks): max abs Δ 0.81 nats, the
# worst sample at 0.12 of this allowance, agreement 0.989. CUDA bf16 keeps bf16 weights too: the 8x headroom
# is for that.
LOGLIK_BF16 = ScoreTolerance("loglik-bf16", atol=1.0, rtol=0.05, min_agreement=0.90)
# P(True) in [0, 1] from a 2-way softmax, fp32 on both sides: a single forward with no long sums, so 1e-3 is
# two orders of magnitude above fp32 noise and well below any real difference.
PTRUE_FP32 = ScoreTolerance("p_true-fp32", atol=1e-3, min_agreement=0.98)
# P(True) with bf16 activations: logits move by a few hundredths, P(True) by up to ~0.01 near 0.5 (where the
# softmax is steepest); 0.05 is the ceiling, and flips happen only between statements scored within 0.1.
# Measured on CPU (bf16 autocast vs fp32, me5-small-st, 86 examples of the 4 tasks): max abs Δ 0.0046,
# agreement 1.0.
PTRUE_BF16 = ScoreTolerance("p_true-bf16", atol=0.05, min_agreement=0.90)


# -- reading runs ------------------------------------------------------------------------------------------------


def _run_dir(path: Path) -> Path:
    """A run folder, or a results root (`bench run --output`) that holds exactly one."""
    if (path / SAMPLES_FILE).is_file() or (path / RESULT_FILE).is_file():
        return path
    found = sorted(p.parent for p in path.glob(f"*/{SAMPLES_FILE}"))
    if len(found) == 1:
        return found[0]
    if not found:
        raise DataError(f"{path}: no {SAMPLES_FILE} here or in a run folder below it")
    raise DataError(f"{path}: {len(found)} run folders ({', '.join(p.name for p in found)}); name one")


def read_samples(path: Path) -> dict[str, Sample]:
    """Samples by example id from a samples.jsonl, a run folder or a results root with one run. Read-only: a
    torn last line (a run still being written, or killed) is ignored, never truncated away."""
    path = Path(path)
    file = path if path.is_file() else _run_dir(path) / SAMPLES_FILE
    try:
        data = file.read_bytes()
    except OSError as err:
        raise DataError(f"{file}: cannot read ({err.strerror})") from err
    return parse_sample_lines(data, file)[0]  # the last line of an id wins, as in SampleStore


# -- score comparison --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SampleDiff:
    """One paired example: the largest |Δ| over its candidate scores, and the two predictions."""

    example_id: str
    task: str
    language: str
    max_abs_diff: float  # nan when a score is not finite
    excess: float  # max over candidates of |Δ| / allowed (> 1: over tolerance; inf for a non-finite score)
    prediction_reference: int
    prediction_candidate: int

    @property
    def agree(self) -> bool:
        return self.prediction_reference == self.prediction_candidate

    @property
    def within(self) -> bool:
        return self.excess <= 1.0


@dataclass(frozen=True)
class ScoreComparison:
    """Reference vs candidate on the examples both scored."""

    tolerance: ScoreTolerance
    ids: IdRule
    n_reference: int
    n_candidate: int
    missing: tuple[str, ...]  # reference ids the candidate did not score
    extra: tuple[str, ...]  # candidate ids the reference did not score
    mismatched: tuple[str, ...]  # paired ids whose gold or number of candidates differ (not the same example)
    diffs: tuple[SampleDiff, ...]  # one per paired, comparable example, in reference order
    agreement_norm: float | None  # acc_norm predictions (causal LMs), where both runs have them
    extra_reasons: tuple[str, ...] = ()  # conditions checked by the caller (device, dtype)
    labels: Mapping[str, Any] = field(default_factory=dict)  # what each side was (backend, device, dtype, path)

    @property
    def n_paired(self) -> int:
        return len(self.diffs)

    @property
    def max_abs_diff(self) -> float:
        if any(math.isnan(d.max_abs_diff) for d in self.diffs):
            return math.nan
        return max((d.max_abs_diff for d in self.diffs), default=0.0)

    @property
    def mean_abs_diff(self) -> float:
        """Mean over examples of the per-sample max |Δ|."""
        values = [d.max_abs_diff for d in self.diffs]
        return sum(values) / len(values) if values else math.nan

    @property
    def agreement(self) -> float:
        return sum(d.agree for d in self.diffs) / len(self.diffs) if self.diffs else math.nan

    @property
    def over_tolerance(self) -> tuple[SampleDiff, ...]:
        return tuple(d for d in self.diffs if not d.within)

    def worst(self, k: int = 5) -> tuple[SampleDiff, ...]:
        return tuple(sorted(self.diffs, key=lambda d: -d.excess)[:k])

    @property
    def verdict(self) -> Verdict:
        t = self.tolerance
        reasons: list[str] = []
        if not self.diffs:
            reasons.append("no example scored by both runs")
        if self.missing:
            reasons.append(f"{len(self.missing)} reference example(s) not in the candidate (e.g. {self.missing[0]})")
        if self.extra and self.ids == "same":
            reasons.append(f"{len(self.extra)} candidate example(s) not in the reference (e.g. {self.extra[0]})")
        if self.mismatched:
            reasons.append(f"{len(self.mismatched)} paired example(s) differ in gold or number of candidates "
                           f"(e.g. {self.mismatched[0]})")
        over = self.over_tolerance
        if over:
            w = self.worst(1)[0]
            reasons.append(f"{len(over)} of {self.n_paired} sample(s) over {t.name} tolerance (worst "
                           f"{w.example_id}: abs Δ {w.max_abs_diff:.4g}, {w.excess:.3g}x the allowed)")
        if self.diffs and not self.agreement >= t.min_agreement:
            reasons.append(f"agreement {self.agreement:.4f} < {t.min_agreement:g}")
        reasons.extend(self.extra_reasons)
        return Verdict(tuple(reasons))

    def figures(self) -> dict[str, Any]:
        """Everything a report or a JSON needs (floats rounded for reading, ids kept in full)."""
        return {
            "tolerance": {"name": self.tolerance.name, "atol": self.tolerance.atol, "rtol": self.tolerance.rtol,
                          "min_agreement": self.tolerance.min_agreement},
            "ids": self.ids, "n_reference": self.n_reference, "n_candidate": self.n_candidate,
            "n_paired": self.n_paired, "missing": len(self.missing), "extra": len(self.extra),
            "mismatched": len(self.mismatched), "max_abs_diff": _num(self.max_abs_diff),
            "mean_abs_diff": _num(self.mean_abs_diff), "agreement": _num(self.agreement),
            "agreement_norm": _num(self.agreement_norm), "over_tolerance": len(self.over_tolerance),
            "worst": [{"example_id": d.example_id, "max_abs_diff": _num(d.max_abs_diff), "excess": _num(d.excess),
                       "agree": d.agree} for d in self.worst()],
            "labels": dict(self.labels), "verdict": self.verdict.status, "reasons": list(self.verdict.reasons),
        }

    def summary(self) -> str:
        norm = "" if self.agreement_norm is None else f", acc_norm agreement {self.agreement_norm:.3f}"
        unpaired = f", {len(self.missing)} missing, {len(self.extra)} extra" if self.missing or self.extra else ""
        return (f"n={self.n_paired}, max abs Δ {self.max_abs_diff:.3g}, agreement {self.agreement:.3f}{norm}"
                f"{unpaired}")


def _num(value: float | None) -> float | None:
    """JSON-safe: NaN/inf become None."""
    return None if value is None or not math.isfinite(value) else float(value)


def _diff(ref: Sample, cand: Sample, tolerance: ScoreTolerance) -> SampleDiff:
    worst_abs = 0.0
    excess = 0.0
    for a, b in zip(ref.scores, cand.scores, strict=True):
        if not (math.isfinite(a) and math.isfinite(b)):
            worst_abs, excess = math.nan, math.inf
            break
        delta = abs(a - b)
        worst_abs = max(worst_abs, delta)
        allowed = tolerance.allowed(a, b)
        excess = max(excess, delta / allowed if allowed > 0 else (math.inf if delta > 0 else 0.0))
    return SampleDiff(ref.example_id, ref.task, ref.language, worst_abs, excess, ref.prediction, cand.prediction)


def compare_samples(reference: Mapping[str, Sample], candidate: Mapping[str, Sample], tolerance: ScoreTolerance,
                    *, ids: IdRule = "same", extra_reasons: Sequence[str] = (),
                    labels: Mapping[str, Any] | None = None) -> ScoreComparison:
    """Pair by example id. ``ids="same"``: both runs must have scored the same examples; ``"subset"``: every
    reference example must be in the candidate, which may have scored more (a larger ``--limit``)."""
    missing = tuple(i for i in reference if i not in candidate)
    extra = tuple(i for i in candidate if i not in reference)
    mismatched: list[str] = []
    diffs: list[SampleDiff] = []
    norm_pairs = norm_agree = 0
    for example_id, ref in reference.items():
        cand = candidate.get(example_id)
        if cand is None:
            continue
        if ref.gold != cand.gold or len(ref.scores) != len(cand.scores):
            mismatched.append(example_id)
            continue
        diffs.append(_diff(ref, cand, tolerance))
        if ref.prediction_norm is not None and cand.prediction_norm is not None:
            norm_pairs += 1
            norm_agree += ref.prediction_norm == cand.prediction_norm
    return ScoreComparison(tolerance=tolerance, ids=ids, n_reference=len(reference), n_candidate=len(candidate),
                           missing=missing, extra=extra, mismatched=tuple(mismatched), diffs=tuple(diffs),
                           agreement_norm=norm_agree / norm_pairs if norm_pairs else None,
                           extra_reasons=tuple(extra_reasons), labels=dict(labels or {}))


def run_label(path: Path) -> dict[str, Any]:
    """Backend, model, device and dtype a run recorded (empty when its result.json is not there yet)."""
    result_path = _run_dir(Path(path)) / RESULT_FILE
    if not result_path.is_file():
        return {"path": str(result_path.parent)}
    m = read_result(result_path).model
    return {"path": str(result_path.parent), "backend": m.get("backend"), "model": m.get("model"),
            "device": m.get("device"), "dtype": m.get("dtype")}


def compare_runs(reference: Path, candidate: Path, tolerance: ScoreTolerance, *, ids: IdRule = "same",
                 candidate_device: str | None = None, reference_device: str | None = None) -> ScoreComparison:
    """`compare_samples` on two run folders (or results roots with one run each). ``*_device`` (e.g. "cuda",
    "cpu"): the device each run must have recorded, so that a silent fallback to CPU cannot pass as a GPU check."""
    ref_label, cand_label = run_label(reference), run_label(candidate)
    reasons: list[str] = []
    for side, label, wanted in (("reference", ref_label, reference_device),
                                ("candidate", cand_label, candidate_device)):
        if wanted is None:
            continue
        device = str(label.get("device") or "")
        if not device.startswith(wanted):
            reasons.append(f"{side} ran on {device or 'an unrecorded device'}, not {wanted}")
    return compare_samples(read_samples(Path(reference)), read_samples(Path(candidate)), tolerance, ids=ids,
                           extra_reasons=reasons, labels={"reference": ref_label, "candidate": cand_label})


# -- a run that must complete ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunCheck:
    """A run that must finish: every planned example scored, every score finite, at least ``min_requests``."""

    examples: int  # samples in samples.jsonl
    planned: int  # examples the result file counts (sum of n over task x language)
    requests: int  # scored candidates (one request each)
    non_finite: int
    wall_seconds: float | None
    min_requests: int
    label: Mapping[str, Any] = field(default_factory=dict)

    @property
    def verdict(self) -> Verdict:
        reasons: list[str] = []
        if self.planned == 0:
            reasons.append("no result file (the run did not finish)")
        elif self.examples != self.planned:
            reasons.append(f"{self.examples} samples for {self.planned} planned examples")
        if self.requests < self.min_requests:
            reasons.append(f"{self.requests} requests < {self.min_requests}")
        if self.non_finite:
            reasons.append(f"{self.non_finite} non-finite score(s)")
        return Verdict(tuple(reasons))

    @property
    def requests_per_s(self) -> float | None:
        return self.requests / self.wall_seconds if self.wall_seconds else None

    def figures(self) -> dict[str, Any]:
        return {"examples": self.examples, "planned": self.planned, "requests": self.requests,
                "non_finite": self.non_finite, "wall_seconds": _num(self.wall_seconds),
                "requests_per_s": _num(self.requests_per_s), "min_requests": self.min_requests,
                "label": dict(self.label), "verdict": self.verdict.status, "reasons": list(self.verdict.reasons)}

    def summary(self) -> str:
        rate = "" if self.requests_per_s is None else f", {self.requests_per_s:.0f} requests/s"
        return f"{self.examples} examples, {self.requests} requests{rate}"


def check_run(path: Path, *, min_requests: int = 1) -> RunCheck:
    folder = _run_dir(Path(path))
    samples = read_samples(folder)
    planned = 0
    wall: float | None = None
    result_path = folder / RESULT_FILE
    if result_path.is_file():
        result = read_result(result_path)
        tasks = result.tasks if isinstance(result, EvalRecord) else {}
        planned = sum(lr.n for t in tasks.values() for lr in t.languages.values())
        raw_wall = result.timing.get("wall_seconds")
        wall = float(raw_wall) if isinstance(raw_wall, int | float) else None
    requests = sum(len(s.scores) for s in samples.values())
    non_finite = sum(1 for s in samples.values() for v in s.scores if not math.isfinite(v))
    return RunCheck(len(samples), planned, requests, non_finite, wall, min_requests, run_label(folder))


# -- efficiency records ------------------------------------------------------------------------------------------


def _probe_peak(probe: Mapping[str, Any]) -> float | None:
    """torch's max allocated on CUDA (set by the shapes alone; reserved memory also depends on what earlier
    probes left cached), else what the probe measured against the limit (peak RSS on CPU)."""
    for key in ("torch_allocated", "peak_bytes", "rss"):
        value = probe.get(key)
        if isinstance(value, int | float) and math.isfinite(value):
            return float(value)
    return None


@dataclass(frozen=True)
class EfficiencyCheck:
    """One model's `bench efficiency` record, checked for a measured, exact, OOM-bounded max batch."""

    model: str
    record: Mapping[str, Any]
    expect_device: str | None = "cuda"
    peak_rel_slack: float = 0.01  # allocator rounding between neighbouring probes, relative to the peak

    @property
    def _max(self) -> Mapping[str, Any]:
        found = self.record.get("max_batch")
        return found if isinstance(found, Mapping) else {}

    @property
    def probes(self) -> list[Mapping[str, Any]]:
        return [p for p in self._max.get("probes") or [] if isinstance(p, Mapping)]

    @property
    def peaks(self) -> list[tuple[int, float | None]]:
        """(batch size, peak bytes) of the probes that fitted, by batch size."""
        fitted = sorted((p for p in self.probes if p.get("fits")), key=lambda p: int(p["batch_size"]))
        return [(int(p["batch_size"]), _probe_peak(p)) for p in fitted]

    @property
    def estimated_max_batch(self) -> int | None:
        est = self.record.get("estimate")
        if not isinstance(est, Mapping) or not isinstance(est.get("max_batch"), Mapping):
            return None
        value = est["max_batch"].get("max_batch")
        return int(value) if isinstance(value, int | float) else None

    @property
    def measured_on(self) -> str:
        device = self.record.get("device")
        return str(device.get("measured_on") or "") if isinstance(device, Mapping) else ""

    @property
    def verdict(self) -> Verdict:
        found = self._max
        if not found:
            return Verdict((f"{self.model}: no measured max batch (estimate only?)",))
        reasons: list[str] = []
        exact = int(found.get("max_batch") or 0)
        if found.get("stop_reason") != "oom":
            reasons.append(f"search stopped by {found.get('stop_reason')} (cap {found.get('cap')}), not by "
                           "running out of memory: lower --memory-limit or raise --max-batch")
        if exact < 1:
            reasons.append("not even batch 1 fitted")
        fits = {int(p["batch_size"]) for p in self.probes if p.get("fits")}
        fails = {int(p["batch_size"]) for p in self.probes if not p.get("fits")}
        if found.get("stop_reason") == "oom" and exact >= 1 and (exact not in fits or exact + 1 not in fails):
            reasons.append(f"max batch {exact} is not bracketed by probes ({exact} fits, {exact + 1} out of memory)")
        if fits and fails and max(fits) > min(fails):
            reasons.append(f"batch {max(fits)} fitted after {min(fails)} ran out of memory")
        peaks = self.peaks
        if any(v is None for _, v in peaks):
            reasons.append("probe peaks not recorded")
        else:
            values = [(b, float(v or 0.0)) for b, v in peaks]
            for (b0, v0), (b1, v1) in itertools.pairwise(values):
                if v1 < v0 * (1 - self.peak_rel_slack):
                    reasons.append(f"probe peak falls from {v0 / 2**30:.3f} GB at batch {b0} to "
                                   f"{v1 / 2**30:.3f} GB at batch {b1}")
                    break
            if len(values) >= 2 and values[0][0] < values[-1][0] and not values[-1][1] > values[0][1]:
                reasons.append("probe peaks do not grow with the batch")
        if self.estimated_max_batch is None:
            reasons.append("no estimate next to the measurement (add --estimate)")
        if self.expect_device and not self.measured_on.startswith(self.expect_device):
            reasons.append(f"measured on {self.measured_on or 'an unrecorded device'}, not {self.expect_device}")
        points = [p for p in self.record.get("throughput") or [] if isinstance(p, Mapping)]
        if not any("examples_per_s" in p for p in points):
            reasons.append("no throughput point was measured")
        return Verdict(tuple(f"{self.model}: {r}" for r in reasons))

    def figures(self) -> dict[str, Any]:
        found = self._max
        exact = found.get("max_batch")
        est = self.estimated_max_batch
        at_max = next((p for p in self.record.get("throughput") or []
                       if isinstance(p, Mapping) and p.get("label") == "max" and "examples_per_s" in p), None)
        return {"model": self.model, "measured_on": self.measured_on, "max_batch": exact,
                "max_pow2": found.get("max_pow2"), "stop_reason": found.get("stop_reason"),
                "limit_bytes": found.get("limit_bytes"), "probes": len(self.probes),
                "peaks_gb": [[b, None if v is None else round(v / 2**30, 4)] for b, v in self.peaks],
                "estimated_max_batch": est,
                "estimate_over_measured": round(est / exact, 3) if est is not None and exact else None,
                "examples_per_s_at_max": None if at_max is None else _num(float(at_max["examples_per_s"])),
                "verdict": self.verdict.status, "reasons": list(self.verdict.reasons)}

    def summary(self) -> str:
        f = self.figures()
        est = f["estimated_max_batch"]
        return (f"{self.model}: max batch {f['max_batch']} ({f['stop_reason']}, {f['probes']} probes), "
                f"estimated {est if est is not None else '–'}")


def check_efficiency(record: Mapping[str, Any], *, expect_device: str | None = "cuda",
                     peak_rel_slack: float = 0.01) -> EfficiencyCheck:
    """Check one efficiency record: the ``efficiency`` field of a result.json, or that file's whole dict."""
    inner = record.get("efficiency") if "efficiency" in record else record
    if not isinstance(inner, Mapping):
        raise DataError("not an efficiency record (no `efficiency` field)")
    model = inner.get("model")
    name = str(model.get("model")) if isinstance(model, Mapping) else "?"
    return EfficiencyCheck(name, inner, expect_device=expect_device, peak_rel_slack=peak_rel_slack)


def check_efficiency_dir(path: Path, *, expect_device: str | None = "cuda",
                         peak_rel_slack: float = 0.01) -> list[EfficiencyCheck]:
    """Every efficiency record under a `bench efficiency --output` folder, in path order."""
    checks = []
    for file in sorted(Path(path).rglob(RESULT_FILE)):
        try:
            doc = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise DataError(f"{file}: cannot read ({err})") from err
        if isinstance(doc, dict) and doc.get("efficiency"):
            checks.append(check_efficiency(doc, expect_device=expect_device, peak_rel_slack=peak_rel_slack))
    return checks


# -- training runs -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainingCheck:
    """A `bench train` output's training.json: finished, all steps done, on the expected device, evaluated."""

    info: Mapping[str, Any]
    steps: int
    expect_device: str | None = "cuda"

    @property
    def verdict(self) -> Verdict:
        info = self.info
        reasons: list[str] = []
        if not info.get("finished"):
            reasons.append("training.json does not say finished")
        if info.get("steps") != self.steps:
            reasons.append(f"{info.get('steps')} steps, not {self.steps}")
        device = str(info.get("device") or "")
        if self.expect_device and not device.startswith(self.expect_device):
            reasons.append(f"trained on {device or 'an unrecorded device'}, not {self.expect_device}")
        evaluations = [e for e in info.get("evaluations") or [] if isinstance(e, Mapping)]
        if not evaluations:
            reasons.append("no held-out evaluation")
        bad = [e.get("step") for e in evaluations
               if not all(isinstance(e.get(k), int | float) and math.isfinite(e[k]) for k in ("loss", "accuracy"))]
        if bad:
            reasons.append(f"non-finite held-out loss or accuracy at step(s) {bad}")
        return Verdict(tuple(reasons))

    def figures(self) -> dict[str, Any]:
        info = self.info
        raw_best, raw_config = info.get("best"), info.get("config")
        best: Mapping[str, Any] = raw_best if isinstance(raw_best, Mapping) else {}
        config: Mapping[str, Any] = raw_config if isinstance(raw_config, Mapping) else {}
        evaluations = [e for e in info.get("evaluations") or [] if isinstance(e, Mapping)]
        last: Mapping[str, Any] = evaluations[-1] if evaluations else {}
        return {"method": config.get("method"), "steps": info.get("steps"), "seconds": info.get("seconds"),
                "device": info.get("device"), "dtype": info.get("dtype"),
                "best_accuracy": best.get("accuracy"), "last_loss": last.get("loss"),
                "evaluations": len(evaluations), "verdict": self.verdict.status,
                "reasons": list(self.verdict.reasons)}

    def summary(self) -> str:
        f = self.figures()
        acc = f["best_accuracy"]
        loss = f["last_loss"]
        return (f"{f['steps']} steps in {f['seconds']}s on {f['device']}, held-out acc "
                f"{'–' if acc is None else f'{acc:.3f}'}, loss {'–' if loss is None else f'{loss:.3f}'}")


def check_training(path: Path, *, steps: int, expect_device: str | None = "cuda") -> TrainingCheck:
    """Check a `bench train --output DIR` (its training.json)."""
    return TrainingCheck(read_json_object(Path(path) / "training.json", "training record"), steps, expect_device)

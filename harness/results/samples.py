"""Per-sample JSONL store: appended and fsynced as samples are scored, so a crash loses nothing finished."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from harness.core import Sample
from harness.errors import DataError


def sample_to_dict(sample: Sample) -> dict[str, Any]:
    return {"example_id": sample.example_id, "task": sample.task, "language": sample.language,
            "split": sample.split, "index": sample.index, "template_id": sample.template_id,
            "requests": [r if isinstance(r, str) else list(r) for r in sample.requests],
            "scores": list(sample.scores), "prediction": sample.prediction, "gold": sample.gold,
            "correct": sample.correct, "prediction_norm": sample.prediction_norm, "truncated": sample.truncated,
            "extra": dict(sample.extra)}


def sample_from_dict(d: dict[str, Any]) -> Sample:
    return Sample(example_id=d["example_id"], task=d["task"], language=d["language"], split=d["split"],
                  index=int(d["index"]), template_id=d["template_id"],
                  requests=tuple(r if isinstance(r, str) else (str(r[0]), str(r[1])) for r in d["requests"]),
                  scores=tuple(float(s) for s in d["scores"]), prediction=int(d["prediction"]),
                  gold=int(d["gold"]), truncated=int(d.get("truncated", 0)),
                  prediction_norm=None if d.get("prediction_norm") is None else int(d["prediction_norm"]),
                  extra=d.get("extra", {}))


def parse_sample_lines(data: bytes, path: Path, hint: str = "") -> tuple[dict[str, Sample], int, int]:
    """(samples by example id, the last line of an id winning; bytes of the complete lines; lines dropped as
    duplicates) from a samples.jsonl's bytes. A last piece without its newline is an unfinished write: not read,
    and not counted in the complete bytes. A bad complete line is a one-line DataError (``hint`` appended)."""
    samples: dict[str, Sample] = {}
    duplicates = good_end = pos = 0
    for number, line in enumerate(data.split(b"\n"), start=1):
        end = pos + len(line) + 1
        if end > len(data):  # last piece without a newline: an unfinished write
            break
        if line.strip():
            try:
                sample = sample_from_dict(json.loads(line))
            except (ValueError, KeyError, TypeError) as err:
                raise DataError(f"{path}: line {number} is not a valid sample ({err}){hint}") from err
            if sample.example_id in samples:
                duplicates += 1
            samples[sample.example_id] = sample
        good_end = end
        pos = end
    return samples, good_end, duplicates


class SampleStore:
    """Append-only JSONL keyed by example id. A torn last line (kill -9 mid-write) is cut off on open."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.samples: dict[str, Sample] = {}
        self.recovered_bytes = 0
        self.duplicates_dropped = 0
        if path.exists():
            self._load()

    def _load(self) -> None:
        data = self.path.read_bytes()
        self.samples, good_end, self.duplicates_dropped = parse_sample_lines(
            data, self.path, hint="; delete the file to start this run again")
        if good_end < len(data):
            self.recovered_bytes = len(data) - good_end
            with self.path.open("r+b") as fh:
                fh.truncate(good_end)
        if self.duplicates_dropped:
            self._rewrite()

    def _rewrite(self) -> None:
        """Keep one line per example (the last written), atomically: files from before runs were locked
        may hold a sample twice."""
        tmp = self.path.with_name(self.path.name + ".tmp")
        with tmp.open("w", encoding="utf-8") as fh:
            for sample in self.samples.values():
                fh.write(json.dumps(sample_to_dict(sample), ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)

    def __contains__(self, example_id: str) -> bool:
        return example_id in self.samples

    def append(self, samples: Iterable[Sample]) -> None:
        batch = list(samples)
        if not batch:
            return
        lines = []
        for s in batch:
            if any(not math.isfinite(v) for v in s.scores):
                raise DataError(f"refusing to write non-finite scores for {s.example_id}")
            lines.append(json.dumps(sample_to_dict(s), ensure_ascii=False))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        for s in batch:
            self.samples[s.example_id] = s


def merge_samples(store: SampleStore, sources: Sequence[Path], order: Sequence[str] = ()) -> int:
    """Append to ``store`` the samples of ``sources`` (data-parallel ranks' files) it lacks, ``order`` first (the
    run's example order, so a merged file reads like a one-process one), then delete the sources. Each append is
    fsynced before any source goes, so a kill at any point loses nothing, and merging again finishes the job
    (idempotent). A source's torn last line (a rank killed mid-write) is cut off as `SampleStore` does."""
    found: dict[str, Sample] = {}
    for source in sources:
        if not source.exists():
            continue
        for example_id, sample in SampleStore(source).samples.items():
            if example_id not in store and example_id not in found:
                found[example_id] = sample
    position = {example_id: i for i, example_id in enumerate(order)}
    missing = sorted(found.values(), key=lambda s: position.get(s.example_id, len(position)))  # stable
    store.append(missing)
    for source in sources:
        source.unlink(missing_ok=True)
    return len(missing)

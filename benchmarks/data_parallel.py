#!/usr/bin/env python
"""Data-parallel `bench run`: N processes (torchrun, the engine `--num-processes` uses) against one process on
the same machine, the same examples and the same total thread count, measured in the same invocation.

Each configuration runs as a fresh `bench run` subprocess into its own output folder, one after the other:

- baseline: 1 process with ``--threads T`` (T = the cores given, default all);
- data parallel: ``torchrun --standalone --nproc_per_node N -m harness.cli run ... --threads T/N``.

Reported per configuration: wall seconds of the whole command (start-up, N model loads, scoring, merge),
``scoring_seconds`` from the result file (rank 0's clock, from the first to the last scored example), examples per
second, and the ratio to the baseline; the accuracies of every task and language must be equal (the harness
writes the result file a single process would). On a GPU node N is the number of GPUs (one process per GPU,
``--threads`` is then the CPU threads per process).

    python benchmarks/data_parallel.py --backend encoder --tasks xcopa,xnli --langs et,sw --limit 100 --processes 2
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _run(argv: list[str], out: Path, env: dict[str, str]) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(argv)}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    (result,) = out.glob("*/result.json")
    return wall, json.loads(result.read_text(encoding="utf-8"))


def _accuracies(record: dict[str, Any]) -> dict[str, float]:
    return {f"{task}/{lang}": lr["accuracy"] for task, tr in record["tasks"].items()
            for lang, lr in tr["languages"].items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="encoder")
    parser.add_argument("--model", default=None)
    parser.add_argument("--tasks", default="xcopa,xnli")
    parser.add_argument("--langs", default="et,sw")
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="total CPU threads (split over N)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", default=None, help="also write the measurements here")
    args = parser.parse_args()
    if args.processes < 2 or args.threads < args.processes:
        sys.exit("--processes must be >= 2 and --threads >= --processes")

    from harness.device import cpu_has_fast_bf16, cpu_model_name
    from harness.models.cache import installed_version

    common = ["run", "--backend", args.backend, "--tasks", args.tasks, "--langs", args.langs,
              "--limit", str(args.limit), "--device", args.device, "--quiet",
              *(["--model", args.model] if args.model else [])]
    work = Path(tempfile.mkdtemp(prefix="bench-data-parallel-"))
    per_process = args.threads // args.processes
    configs = [
        ("1 process", [sys.executable, "-m", "harness.cli", *common, "--threads", str(args.threads)],
         args.threads),
        (f"{args.processes} processes (torchrun)",
         [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={args.processes}",
          "-m", "harness.cli", *common, "--threads", str(per_process)], per_process),
    ]
    rows: list[dict[str, Any]] = []
    try:
        for label, argv, threads in configs:
            out = work / str(len(rows))
            env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
            wall, record = _run([*argv, "--output", str(out)], out, env)
            timing = record["timing"]
            n = sum(lr["n"] for tr in record["tasks"].values() for lr in tr["languages"].values())
            rows.append({"config": label, "threads_per_process": threads, "world_size": record.get("world_size"),
                         "wall_s": round(wall, 2), "scoring_s": timing["scoring_seconds"],
                         "load_s": timing["model_load_seconds"], "examples": n,
                         "examples_per_s": round(n / timing["scoring_seconds"], 2),
                         "dtype": record["model"]["dtype"], "device": record["model"]["device"],
                         "accuracies": _accuracies(record)})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    base = rows[0]
    same = all(r["accuracies"] == base["accuracies"] for r in rows)
    report = {
        "cpu": cpu_model_name(), "cpu_fast_bf16": cpu_has_fast_bf16(), "cpu_count": os.cpu_count(),
        "versions": {p: installed_version(p) for p in ("torch", "transformers", "accelerate", "statement-bench")},
        "command": " ".join(common), "accuracies_equal": same,
        "rows": [{k: v for k, v in r.items() if k != "accuracies"} for r in rows],
    }
    print(f"CPU: {report['cpu']} (fast bf16: {report['cpu_fast_bf16']}, {report['cpu_count']} cores); "
          f"{report['command']}")
    print(f"{'config':28s} {'threads/proc':>12s} {'wall s':>8s} {'load s':>7s} {'scoring s':>9s} {'ex/s':>7s} "
          f"{'wall ratio':>10s} {'scoring ratio':>13s}")
    for r in rows:
        print(f"{r['config']:28s} {r['threads_per_process']:12d} {r['wall_s']:8.1f} {r['load_s']:7.1f} "
              f"{r['scoring_s']:9.1f} {r['examples_per_s']:7.1f} {base['wall_s'] / r['wall_s']:10.2f} "
              f"{base['scoring_s'] / r['scoring_s']:13.2f}")
    print(f"accuracies equal across configurations: {same}; dtype {base['dtype']}, device {base['device']}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()

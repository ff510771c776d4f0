"""Data-parallel `bench run` (harness.distributed): real 2-process launches on CPU (gloo) write the result file a
single process writes; a killed rank's samples are kept; the run lock covers every rank; sharding and merging."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from harness import distributed
from harness.core import Sample
from harness.distributed import World
from harness.errors import DataError, UsageError
from harness.results.lock import run_lock
from harness.results.samples import SampleStore, merge_samples, parse_sample_lines
from harness.results.schema import SCHEMA_VERSION, read_result, record_from_dict, result_to_dict
from harness.runner import RunConfig, execute, plan_run

FAKE = ["--backend", "fake", "--tasks", "all", "--langs", "zh,ru,sw", "--limit", "20"]  # 2-3 languages per task
FAKE_EXAMPLES = 196  # xcopa zh,sw; xnli and xstorycloze zh,ru,sw; xwinograd zh (16 rows),ru: 9 x 20 + 16
ENCODER = ["--backend", "encoder", "--tasks", "xcopa", "--langs", "et,ht", "--limit", "4"]
SLOW = ["--backend", "fake", "--model", "slow", "--tasks", "xcopa", "--limit", "100"]  # 11 languages, 1100 examples
LIGHT = ["--threads", "1", "--quiet"]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env["OMP_NUM_THREADS"] = "1"
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def one_process(args: list[str], output: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness.cli", "run", *args, *LIGHT, "--output", str(output)],
                          capture_output=True, text=True, env=_env(), timeout=120)


def accelerate_launch(args: list[str], output: Path) -> subprocess.CompletedProcess[str]:
    """The documented CPU command: `--multi_gpu` is what makes accelerate start several processes (torchrun)."""
    return subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                           "--main_process_port", str(_free_port()), "-m", "harness.cli", "run", *args, *LIGHT,
                           "--output", str(output)], capture_output=True, text=True, env=_env(), timeout=120)


def run_dir(output: Path) -> Path:
    (found,) = [p for p in output.iterdir() if p.is_dir()]
    return found


def result(output: Path) -> dict[str, Any]:
    return result_to_dict(read_result(run_dir(output) / "result.json"))


@pytest.fixture(scope="module")
def fake_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """The same fake-backend command as one process and as two (accelerate launch); the 2-process stdout."""
    base = tmp_path_factory.mktemp("fake")
    single = one_process(FAKE, base / "one")
    assert single.returncode == 0, single.stderr
    double = accelerate_launch(FAKE, base / "two")
    assert double.returncode == 0, double.stderr
    return base / "one", base / "two", double.stdout


def test_two_processes_write_the_one_process_result_file(fake_runs: tuple[Path, Path, str]) -> None:
    one, two, _ = fake_runs
    a, b = result(one), result(two)
    assert a["run_id"] == b["run_id"]
    assert (a["world_size"], b["world_size"]) == (1, 2)
    assert a["tasks"] == b["tasks"]  # every task, language and metric (accuracy, stderr, CIs, n, truncated)
    assert {t: list(r["languages"]) for t, r in b["tasks"].items()} == {
        "xcopa": ["zh", "sw"], "xnli": ["zh", "ru", "sw"], "xstorycloze": ["zh", "ru", "sw"],
        "xwinograd": ["zh", "ru"]}
    for r in (a, b):
        r["config"].pop("output_dir")
        assert r["timing"]["examples_scored_now"] == FAKE_EXAMPLES
    assert a["config"] == b["config"] and a["model"] == b["model"]
    # merged in the run's example order: the very bytes one process writes
    one_samples = (run_dir(one) / "samples.jsonl").read_bytes()
    assert (run_dir(two) / "samples.jsonl").read_bytes() == one_samples
    assert len(one_samples.splitlines()) == FAKE_EXAMPLES
    assert sorted(p.name for p in run_dir(two).iterdir()) == sorted(p.name for p in run_dir(one).iterdir())
    assert not distributed.rank_sample_files(run_dir(two))


def test_only_rank_zero_reports(fake_runs: tuple[Path, Path, str]) -> None:
    _, two, stdout = fake_runs
    assert stdout.count(f"scored {FAKE_EXAMPLES} examples now by 2 processes, 0 resumed") == 1
    assert stdout.count(f"results: {run_dir(two) / 'result.json'}") == 1


def test_second_launch_is_refused_on_every_rank(fake_runs: tuple[Path, Path, str]) -> None:
    """`--num-processes 2` (torchrun --standalone) of a run whose lock is held: each rank says so, in one line."""
    one, _, _ = fake_runs
    folder = run_dir(one)
    before = (folder / "samples.jsonl").read_bytes()
    with run_lock(folder):
        refused = subprocess.run([sys.executable, "-m", "harness.cli", "run", *FAKE, *LIGHT, "--output", str(one),
                                  "--num-processes", "2"], capture_output=True, text=True, env=_env(), timeout=120)
    assert refused.returncode == 2  # a usage error, as with one process
    line = f"error: another bench run (pid {os.getpid()}) is writing to {folder}; wait for it to finish, or " \
           "pass another --output"
    lines = (refused.stdout + refused.stderr).splitlines()
    assert lines.count(line) == 2, refused.stderr  # rank 0 and rank 1
    assert [x for x in lines if x.strip() and x != line] == []  # and nothing else: the launcher stays quiet
    assert (folder / "samples.jsonl").read_bytes() == before
    assert not distributed.rank_sample_files(folder)


def test_real_encoder_two_processes_match_one(tmp_path: Path) -> None:
    single = one_process(ENCODER, tmp_path / "one")
    assert single.returncode == 0, single.stderr
    double = accelerate_launch(ENCODER, tmp_path / "two")
    assert double.returncode == 0, double.stderr
    a, b = result(tmp_path / "one"), result(tmp_path / "two")
    assert a["run_id"] == b["run_id"] and (a["world_size"], b["world_size"]) == (1, 2)
    for lang in ("et", "ht"):
        la, lb = a["tasks"]["xcopa"]["languages"][lang], b["tasks"]["xcopa"]["languages"][lang]
        assert (lb["n"], lb["accuracy"]) == (la["n"], la["accuracy"]) == (4, la["accuracy"])
    assert b["tasks"]["xcopa"]["mean_accuracy"] == a["tasks"]["xcopa"]["mean_accuracy"]
    # batches differ between 1 and 2 processes (bf16 autocast): scores agree closely, predictions exactly
    def samples(output: Path) -> dict[str, Sample]:
        return SampleStore(run_dir(output) / "samples.jsonl").samples
    sa, sb = samples(tmp_path / "one"), samples(tmp_path / "two")
    assert list(sa) == list(sb)
    for example_id, s in sa.items():
        assert sb[example_id].prediction == s.prediction
        assert sb[example_id].scores == pytest.approx(s.scores, abs=0.02)


def _wait_for_lines(path: Path, deadline: float) -> None:
    while time.monotonic() < deadline:
        if path.exists() and path.read_bytes().count(b"\n") >= 1:
            return
        time.sleep(0.05)
    raise AssertionError(f"{path}: no sample written in time")


def test_kill_one_rank_then_resume_with_one_process(tmp_path: Path) -> None:
    out = tmp_path / "slow"
    launcher = subprocess.Popen([sys.executable, "-m", "harness.cli", "run", *SLOW, *LIGHT, "--output", str(out),
                                 "--num-processes", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=_env())
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not (out.exists() and any(out.iterdir())):
            time.sleep(0.05)
        folder = run_dir(out)
        _wait_for_lines(folder / distributed.rank_samples_file(1), deadline)
        (rank1,) = [p for p in psutil.Process(launcher.pid).children(recursive=True)
                    if p.environ().get("RANK") == "1"]
        rank1.send_signal(signal.SIGKILL)
        _, stderr = launcher.communicate(timeout=60)
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.communicate()
    assert launcher.returncode == 1
    assert "was killed by signal" in stderr and "finished samples are kept" in stderr
    assert not (folder / "result.json").exists()
    done: set[str] = set()
    for path in distributed.rank_sample_files(folder):
        done |= set(parse_sample_lines(path.read_bytes(), path)[0])
    assert 0 < len(done) < 1100

    cfg = RunConfig(backend="fake", model="slow", tasks=("xcopa",), limit=100, threads=1, output_dir=str(out))
    resumed = execute(plan_run(cfg), show_progress=False)
    assert (resumed.resumed, resumed.scored_now) == (len(done), 1100 - len(done))  # only the missing ones
    assert resumed.result.world_size == 1
    assert not distributed.rank_sample_files(folder)
    clean = execute(plan_run(RunConfig(backend="fake", model="random", tasks=("xcopa",), limit=100, threads=1,
                                       output_dir=str(tmp_path / "clean"))), show_progress=False)
    assert result_to_dict(resumed.result)["tasks"] == result_to_dict(clean.result)["tasks"]  # slow = random, paused
    lines = resumed.samples_path.read_text(encoding="utf-8").splitlines()
    assert sorted(lines) == sorted(clean.samples_path.read_text(encoding="utf-8").splitlines())
    assert len(lines) == 1100


# -- units -----------------------------------------------------------------------------------------------------------


def test_shard_is_deterministic_disjoint_and_complete() -> None:
    items = [f"x/{i}" for i in range(11)]
    for size in (1, 2, 3, 8, 16):
        parts = [distributed.shard(items, World(rank=r, world_size=size)) for r in range(size)]
        assert parts == [distributed.shard(items, World(rank=r, world_size=size)) for r in range(size)]
        assert sorted(x for p in parts for x in p) == sorted(items)
        assert sum(len(p) for p in parts) == len(items)  # disjoint: no item twice
        assert max(map(len, parts)) - min(map(len, parts)) <= 1
    assert distributed.shard(items, World(rank=1, world_size=3)) == ["x/1", "x/4", "x/7", "x/10"]


def test_world_without_a_launcher_is_one_process(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch.distributed as dist

    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert distributed.world() == World(rank=0, world_size=1, local_rank=0)
    assert not dist.is_initialized()
    here = World()
    assert distributed.broadcast(here, {"a": 1}) == {"a": 1}
    distributed.barrier(here)
    distributed.leave(here)  # nothing to leave
    assert distributed.device_for("auto", here) == "auto"
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(UsageError, match="WORLD_SIZE='two' is not a number"):
        distributed.world()
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(UsageError, match="RANK=2 WORLD_SIZE=2: not a valid process layout"):
        distributed.world()


_LEAVE = """
import sys, torch.distributed as dist
from harness import distributed
here = distributed.world()
assert dist.is_initialized()
got = distributed.broadcast(here, "from rank 0" if here.is_main else None)
distributed.leave(here, wait=sys.argv[1] == "wait")
print(here.rank, got, dist.is_initialized())
"""


@pytest.mark.parametrize("wait", ["wait", "error-path"])
def test_leave_destroys_the_group_it_made(wait: str) -> None:
    """Two real gloo processes: after leave() neither has a process group (left to interpreter exit, gloo's
    teardown sometimes aborted a finished rank with SIGABRT, failing the launch)."""
    env = {**_env(), "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port())}
    procs = [subprocess.Popen([sys.executable, "-c", _LEAVE, wait], env={**env, "RANK": str(r), "LOCAL_RANK": str(r)},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in (0, 1)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outs]
    assert [out.strip() for out, _ in outs] == ["0 from rank 0 False", "1 from rank 0 False"]


def test_device_for_a_rank(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    here = World(rank=3, world_size=4, local_rank=1)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert distributed.device_for("auto", here) == "cuda:1"
    assert distributed.device_for("cuda", here) == "cuda:1"
    assert distributed.device_for("cuda:0", here) == "cuda:0"
    assert distributed.device_for("cpu", here) == "cpu"
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)  # two processes on a one-GPU node
    with pytest.raises(UsageError, match=r"rank 3 has LOCAL_RANK 1, but this node sees 1 GPU\(s\): start at most 1"):
        distributed.device_for("auto", here)
    assert distributed.device_for("auto", World(rank=2, world_size=4, local_rank=0)) == "cuda:0"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert distributed.device_for("auto", here) == "auto"


def _sample(i: int) -> Sample:
    return Sample(example_id=f"t/xx/test/{i}", task="t", language="xx", split="test", index=i, template_id=None,
                  requests=("a", "b"), scores=(0.1 * i, 0.5), prediction=int(0.1 * i > 0.5), gold=0)


def test_rank_files_are_found_by_rank(tmp_path: Path) -> None:
    for name in ("samples.rank10.jsonl", "samples.rank2.jsonl", "samples.rank0.jsonl", "samples.jsonl",
                 "samples.rank1.jsonl.tmp", "result.json"):
        (tmp_path / name).write_text("")
    assert [p.name for p in distributed.rank_sample_files(tmp_path)] == [
        "samples.rank0.jsonl", "samples.rank2.jsonl", "samples.rank10.jsonl"]
    assert distributed.rank_sample_files(tmp_path / "absent") == []


def test_merge_is_ordered_idempotent_and_cuts_torn_lines(tmp_path: Path) -> None:
    r0, r1 = tmp_path / distributed.rank_samples_file(0), tmp_path / distributed.rank_samples_file(1)
    SampleStore(r0).append([_sample(0), _sample(2), _sample(4)])
    SampleStore(r1).append([_sample(1), _sample(3)])
    with r1.open("ab") as fh:
        fh.write(b'{"example_id": "t/xx/test/5", "ta')  # rank 1 killed mid-write: sample 5 is not done
    target = tmp_path / "samples.jsonl"
    store = SampleStore(target)
    store.append([_sample(2)])  # merged by an earlier, interrupted merge
    order = [f"t/xx/test/{i}" for i in range(6)]
    assert merge_samples(store, [r0, r1], order) == 4
    assert not r0.exists() and not r1.exists()
    ids = [json.loads(line)["example_id"] for line in target.read_text(encoding="utf-8").splitlines()]
    assert ids == ["t/xx/test/2", "t/xx/test/0", "t/xx/test/1", "t/xx/test/3", "t/xx/test/4"]
    assert list(SampleStore(target).samples) == ids
    # a kill after the append but before the sources went: merging again adds nothing and removes them
    SampleStore(r0).append([_sample(0), _sample(4)])
    again = SampleStore(target)
    assert merge_samples(again, [r0, tmp_path / "gone.jsonl"], order) == 0
    assert not r0.exists()
    assert [json.loads(line)["example_id"] for line in target.read_text(encoding="utf-8").splitlines()] == ids
    assert merge_samples(again, [], order) == 0  # nothing to merge: the file is left as it is


def test_world_size_is_optional_in_the_result_file(tmp_path: Path) -> None:
    cfg = RunConfig(backend="fake", tasks=("xcopa",), languages=("et",), limit=3, output_dir=str(tmp_path))
    doc = json.loads((execute(plan_run(cfg), show_progress=False).result_path).read_text(encoding="utf-8"))
    assert doc["world_size"] == 1 and doc["schema_version"] == SCHEMA_VERSION
    record = record_from_dict(doc)
    assert record.world_size == 1  # type: ignore[union-attr]
    older = {k: v for k, v in doc.items() if k != "world_size"} | {"schema_version": "1.2"}
    assert record_from_dict(older).world_size is None  # type: ignore[union-attr]
    assert result_to_dict(record_from_dict(older)) == older  # an older file reads and writes back unchanged
    for bad, message in ((0, "expected a positive number of processes, got 0"),
                         ("2", "expected an integer, got")):
        with pytest.raises(DataError, match=f"x.json: world_size: {message}"):
            record_from_dict(doc | {"world_size": bad}, where="x.json")


class WholeEvaluation:
    """A backend that evaluates whole example sets itself (as the lm-eval bridge does)."""

    name = "lm-eval"
    request_kind = "loglikelihood"
    prompt_version = "lm-eval-0.4.13"

    def info(self) -> Any:
        raise AssertionError("refused before the model is described")

    def evaluate(self, example_sets: Any) -> list[Sample]:
        raise AssertionError("refused before anything is evaluated")

    def close(self) -> None:
        return None


def test_whole_evaluation_backends_refuse_several_processes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(distributed, "world", lambda: World(rank=1, world_size=4, local_rank=1))
    cfg = RunConfig(backend="lm-eval", tasks=("xcopa",), languages=("et",), limit=2, output_dir=str(tmp_path))
    with pytest.raises(UsageError, match=r"^--backend lm-eval runs a whole evaluation itself and does not split it "
                                          r"across 4 processes; run it as one process$"):
        execute(plan_run(cfg), WholeEvaluation(), show_progress=False)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []

"""The `bench` command line. Errors from bad input become one line and an exit code, never a traceback."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from harness.errors import BenchError

F = TypeVar("F", bound=Callable[..., Any])
ALL = "all"


class BenchFailure(click.ClickException):
    """Shown as `error: <one line>`; `failure()` makes one with the BenchError's exit code."""

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


def failure(message: str, exit_code: int) -> BenchFailure:
    # click reads `exit_code` from the class; a subclass per code keeps it typed.
    cls = type(f"BenchFailure{exit_code}", (BenchFailure,), {"exit_code": exit_code})
    return cls(message)


def one_line_errors(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except BenchError as err:
            raise failure(str(err).splitlines()[0] if str(err) else type(err).__name__, err.exit_code) from err
    return wrapper  # type: ignore[return-value]


def _csv(value: str | None) -> tuple[str, ...] | None:
    if value is None or value.strip().lower() == ALL:
        return None
    items = tuple(v.strip() for v in value.split(",") if v.strip())
    return items or None


def _key_values(items: tuple[str, ...], option: str) -> tuple[tuple[str, str], ...]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise failure(f"{option} {item!r}: write NAME=VALUE", 2)
        out[key.strip()] = value.strip()
    return tuple(out.items())


include_path_option = click.option(
    "--include-path", "include_paths", multiple=True, metavar="DIR",
    help="Directory (searched recursively) or file of your own task files (repeatable).")


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="statement-bench", prog_name="bench")
def main() -> None:
    """statement-bench: zero-shot multilingual evaluation of statement-tuned encoders and LLMs."""


@main.command("run")
@click.option("--backend", default="encoder", show_default=True, help="Model backend (see `bench list backends`).")
@click.option("--model", default=None, help="Preset name, local directory or hub id (default: backend's default).")
@click.option("--adapter", default=None, help="PEFT adapter directory applied on top of --model.")
@click.option("--tasks", default=ALL, show_default=True, help="Comma-separated tasks, or 'all'.")
@click.option("--langs", default=ALL, show_default=True, help="Comma-separated languages, or 'all'.")
@click.option("--split", default=None, help="Split (default: each task's eval split).")
@click.option("--limit", type=int, default=None, help="First N examples per language.")
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for template draws.")
@click.option("--dtype", default="auto", show_default=True, help="auto | fp32 | bf16 | fp16 (auto: from the device).")
@click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda | cuda:N")
@click.option("--threads", type=int, default=None, help="CPU threads for torch (default: torch's).")
@click.option("--max-length", type=int, default=None, help="Override the model's input token limit.")
@click.option("--prompt", type=click.Choice(["default", "lm-eval", "statements"]), default="default",
              show_default=True, help="Causal LMs: lm-eval 0.4.13 log-likelihood prompts (default), or judge the "
              "encoder's statements ('{statement}\\nTrue or False? Answer:').")
@click.option("--chat-template/--no-chat-template", default=False, show_default=True,
              help="Wrap causal-LM contexts in the tokenizer's chat template (recorded).")
@click.option("--add-bos/--no-add-bos", default=None, help="Force BOS on/off (default: the tokenizer's).")
@click.option("--trust-remote-code", is_flag=True, help="Allow model code from the model directory / hub.")
@click.option("--tensor-parallel-size", type=int, default=None, help="vLLM: GPUs per model replica (tensor).")
@click.option("--pipeline-parallel-size", type=int, default=None, help="vLLM: pipeline stages (Ray across nodes).")
@click.option("--prefix-caching/--no-prefix-caching", default=None, help="vLLM: automatic prefix caching (default "
              "off: vLLM does not read it for prompt log-probabilities).")
@click.option("--max-num-batched-tokens", type=int, default=None, help="vLLM: tokens per engine step (default 4096: "
              "bounds the memory of full-vocabulary prompt log-probabilities).")
@click.option("--gpu-memory-utilization", type=float, default=None, help="vLLM: fraction of GPU memory the engine "
              "may use, in (0, 1] (default: vLLM's).")
@click.option("--distributed-executor-backend", type=click.Choice(["ray", "mp"]), default=None,
              help="vLLM: ray (pipeline parallelism across nodes) or mp (one node) (default: vLLM's choice).")
@click.option("--data-source", type=click.Choice(["packaged", "hub"]), default="packaged", show_default=True,
              help="Packaged copies, or `datasets.load_dataset` from the Hub ids.")
@click.option("--hub-dir", default=None, help="Local mirror of Hub datasets, laid out by repo id.")
@click.option("--task-option", "task_options", multiple=True, metavar="NAME=VALUE",
              help="A variant a task file declares, e.g. a corrected field (repeatable; `bench list tasks` lists "
                   "each task's options).")
@click.option("--templates", "templates_mode", type=click.Choice(["draw", "all"]), default="draw", show_default=True,
              help="Statement templates: one seeded draw per example, or every template of the task (template "
                   "robustness: accuracy per template, mean and spread).")
@click.option("--lm-eval-task", "lm_eval_tasks", multiple=True, metavar="NAME",
              help="An lm-eval multiple_choice task from lm-eval's registry (and --include-path), instead of "
                   "--tasks (repeatable).")
@click.option("--templates-dir", "templates_dir", default=None, help="Directory of <task>.yaml statement-template "
              "overrides.")
@include_path_option
@click.option("--output", default="results", show_default=True, help="Results directory (one folder per run).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@one_line_errors
def run_cmd(backend: str, model: str | None, adapter: str | None, tasks: str, langs: str, split: str | None,
            limit: int | None, batch_size: int, seed: int, dtype: str, device: str, threads: int | None,
            max_length: int | None, prompt: str, chat_template: bool, add_bos: bool | None,
            trust_remote_code: bool, tensor_parallel_size: int | None, pipeline_parallel_size: int | None,
            prefix_caching: bool | None, max_num_batched_tokens: int | None, gpu_memory_utilization: float | None,
            distributed_executor_backend: str | None, data_source: str, hub_dir: str | None,
            task_options: tuple[str, ...], templates_mode: str, lm_eval_tasks: tuple[str, ...],
            templates_dir: str | None, include_paths: tuple[str, ...], output: str, quiet: bool) -> None:
    """Evaluate a model zero-shot on the eval tasks; resumable (re-run the same command)."""
    from harness.reports.tables import run_table
    from harness.runner import RunConfig, execute, plan_run
    from harness.tasks.specs import task_names

    vllm_only = {"--tensor-parallel-size": tensor_parallel_size, "--pipeline-parallel-size": pipeline_parallel_size,
                 "--prefix-caching/--no-prefix-caching": prefix_caching,
                 "--max-num-batched-tokens": max_num_batched_tokens,
                 "--gpu-memory-utilization": gpu_memory_utilization,
                 "--distributed-executor-backend": distributed_executor_backend}
    given = [flag for flag, value in vllm_only.items() if value is not None]
    if given and backend != "vllm":
        raise failure(f"{', '.join(given)} apply to --backend vllm only (got --backend {backend})", 2)
    config = RunConfig(
        backend=backend, model=model, adapter=adapter,
        # --lm-eval-task without an explicit --tasks runs only the lm-eval tasks
        tasks=() if lm_eval_tasks and click.get_current_context().get_parameter_source("tasks")
        == click.core.ParameterSource.DEFAULT else (_csv(tasks) or task_names(include_paths)),
        languages=_csv(langs), split=split, limit=limit, batch_size=batch_size, seed=seed, dtype=dtype,
        device=device, threads=threads, max_length=max_length, prompt=prompt, chat_template=chat_template,
        add_bos=add_bos, trust_remote_code=trust_remote_code,
        backend_options=tuple((k, v) for k, v in (("tensor_parallel_size", tensor_parallel_size),
                                                  ("pipeline_parallel_size", pipeline_parallel_size),
                                                  ("enable_prefix_caching", prefix_caching),
                                                  ("max_num_batched_tokens", max_num_batched_tokens),
                                                  ("gpu_memory_utilization", gpu_memory_utilization),
                                                  ("distributed_executor_backend", distributed_executor_backend))
                                if v is not None),
        data_source=data_source, hub_dir=hub_dir,
        task_options=_key_values(task_options, "--task-option"), templates_dir=templates_dir,
        templates_mode=templates_mode, lm_eval_tasks=lm_eval_tasks, include_paths=include_paths, output_dir=output)
    plan = plan_run(config)
    try:
        outcome = execute(plan, show_progress=not quiet)
    except KeyboardInterrupt:
        raise failure(f"interrupted; finished samples are kept under {output}/ — re-run the same command "
                      "to resume", 130) from None
    r = outcome.result
    m = r.model
    prompt_used = next(iter(r.tasks.values())).prompt if r.tasks else "?"
    click.echo(f"\n{r.run_id}: {m['backend']} {m['model']} | prompt {prompt_used} | dtype {m['dtype']} | "
               f"device {m['device']} | threads {m['threads']} | batch {config.batch_size} | seed {config.seed}")
    click.echo(run_table(r))
    if config.templates_mode == "all":
        from harness.reports.sensitivity import sensitivity_text

        click.echo(f"\n{sensitivity_text(r)}")
    for note in m.get("notes") or []:
        click.echo(f"note: {note}")
    t = r.timing
    click.echo(f"scored {outcome.scored_now} examples now, {outcome.resumed} resumed; "
               f"wall {t['wall_seconds']:.1f}s (model load {t['model_load_seconds']:.1f}s)")
    click.echo(f"results: {outcome.result_path}\nsamples: {outcome.samples_path}")


def _ints(value: str | None, option: str) -> tuple[int, ...]:
    from harness.errors import UsageError

    items = _csv(value) or ()
    try:
        return tuple(int(v) for v in items)
    except ValueError:
        raise UsageError(f"{option} {value!r}: give comma-separated integers") from None


@main.command("efficiency")
@click.option("--models", default=None, help="Comma-separated presets or local dirs (default: the seed's efficiency "
              "set, random weights).")
@click.option("--tasks", default=None, help="Task(s) whose real inputs are the work (default: the first "
              "built-in task).")
@click.option("--langs", default=ALL, show_default=True, help="Comma-separated languages, or 'all'.")
@click.option("--limit", type=int, default=None, help="First N examples per language (default: all).")
@click.option("--gpu", "gpu", default=None, help="Device profile (a100, h100, h100-nvl, h200, gh200, l40s, l4, t4, "
              "a10g, a6000, v100, b200, rtx4090, cpu; see `bench list devices`): refused unless this machine has "
              "it, or with --estimate. Without it a CUDA device with no profile is measured.")
@click.option("--estimate", is_flag=True, help="Add the analytic estimate (memory model + roofline), labelled "
              "estimated; alone when --gpu names a device this machine does not have.")
@click.option("--weights", type=click.Choice(["auto", "real", "random"]), default="auto", show_default=True,
              help="random: true architecture from the preset's config.json, seeded random weights; auto: real "
              "where the weights are on this machine.")
@click.option("--dtype", default="auto", show_default=True, help="auto | fp32 | bf16 | fp16")
@click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda | cuda:N")
@click.option("--threads", type=int, default=None, help="CPU threads for torch.")
@click.option("--max-batch", type=int, default=65536, show_default=True, help="Cap of the max-batch search.")
@click.option("--memory-limit", type=float, default=None, help="GB (2**30 bytes) a model may use (CPU: peak RSS of "
              "its process; CUDA: torch's memory fraction). CPU default: 80%% of available memory.")
@click.option("--batch-sizes", default="1,16", show_default=True, help="Matched batch sizes for throughput (each "
              "model also runs at its own max batch).")
@click.option("--min-iters", type=int, default=10, show_default=True, help="Timed batches per throughput point.")
@click.option("--min-seconds", type=float, default=10.0, show_default=True, help="Timed seconds per point.")
@click.option("--warmup", type=int, default=1, show_default=True, help="Warm-up forwards (timed apart).")
@click.option("--probe-forwards", type=int, default=3, show_default=True, help="Forwards per max-batch probe.")
@click.option("--seq-len", type=int, default=None, help="Probe at this padded length instead of the longest input.")
@click.option("--seed", type=int, default=0, show_default=True, help="Template draws, random weights, batch order.")
@click.option("--output", default="results", show_default=True, help="Results directory (one folder per model).")
@include_path_option
@one_line_errors
def efficiency_cmd(models: str | None, tasks: str, langs: str, limit: int | None, gpu: str | None, estimate: bool,
                   weights: str, dtype: str, device: str, threads: int | None, max_batch: int,
                   memory_limit: float | None, batch_sizes: str, min_iters: int, min_seconds: float, warmup: int,
                   probe_forwards: int, seq_len: int | None, seed: int, output: str,
                   include_paths: tuple[str, ...]) -> None:
    """Max batch size, throughput, latency and memory per model, next to the device's ceilings."""
    from harness.efficiency.runner import execute_efficiency, plan_efficiency
    from harness.efficiency.spec import MeasureSpec
    from harness.errors import UsageError
    from harness.reports.efficiency import efficiency_section
    from harness.tasks.registry import default_task

    if limit is not None and limit < 1:
        raise UsageError(f"--limit {limit}: must be a positive number of examples per language")
    if warmup < 0:
        raise UsageError(f"--warmup must not be negative (got {warmup})")
    base = MeasureSpec(
        model="", weights=weights, tasks=_csv(tasks) or (default_task(),), languages=_csv(langs), limit=limit,
        include_paths=include_paths,
        dtype=dtype, device=device, threads=threads, seed=seed,
        memory_limit_bytes=None if memory_limit is None else int(memory_limit * 2**30), max_batch=max_batch,
        batch_sizes=_ints(batch_sizes, "--batch-sizes"), warmup=warmup, probe_forwards=probe_forwards,
        min_iters=min_iters, min_seconds=min_seconds, seq_len=seq_len, profile=gpu, estimate=estimate)
    plan = plan_efficiency(_csv(models), base, output)
    try:
        outcomes = execute_efficiency(plan, log=lambda line: click.echo(line, err=True))
    except KeyboardInterrupt:
        raise failure(f"interrupted; finished models are kept under {output}/ — re-run the same command to "
                      "resume", 130) from None
    done = [o.result for o in outcomes if o.result is not None]
    if done:
        click.echo(efficiency_section(done))
    for o in outcomes:
        click.echo(f"{o.model}: {o.result_path}" + (" (resumed)" if o.resumed else "") if o.result_path
                   else f"{o.model}: FAILED: {o.error}")
    failed = [o for o in outcomes if o.error]
    if failed:
        raise failure(f"{len(failed)} of {len(outcomes)} model(s) failed: "
                      + "; ".join(f"{o.model}: {o.error}" for o in failed), 1)


@main.group("list")
def list_group() -> None:
    """List tasks, model presets or backends."""


@list_group.command("tasks")
@include_path_option
@one_line_errors
def list_tasks(include_paths: tuple[str, ...]) -> None:
    """Tasks (built-in and from --include-path), languages, splits and row counts."""
    from harness.reports.tables import markdown_table
    from harness.tasks.loading import manifest
    from harness.tasks.registry import load_registry

    registry = load_registry(include_paths)
    packaged = manifest()["tasks"]
    rows = []
    for name, spec in registry.tasks.items():
        for split, sspec in spec.splits.items():
            entries = packaged.get(name, {}).get("splits", {}).get(split, {}) if spec.source == "packaged" else {}
            counts = [f"{lang}:{spec.rows(split, lang)}{'*' if entries.get(lang, {}).get('derived') else ''}"
                      for lang in spec.languages]
            known = all(sspec.rows_for(lang) is not None for lang in spec.languages)
            total = str(sum(spec.rows(split, lang) for lang in spec.languages)) if known else "?"
            default = " (default)" if split == spec.default_split else ""
            rows.append([name, split + default, str(len(spec.languages)), total,
                         " ".join(counts) if known else " ".join(spec.languages)])
    click.echo(markdown_table(["task", "split", "langs", "rows", "rows per language (* = derived)"], rows,
                              align="llrrl"))
    for name, spec in registry.tasks.items():
        chance = f"{spec.chance:.1f}%" if spec.chance is not None else "varies"
        data = {"packaged": "packaged data", "files": "local files", "hub": "Hub"}[spec.source]
        where = "built-in" if name in registry.builtin else str(spec.path)
        options = "".join(f"; --task-option {v.name}={'|'.join(v.choices)}" for v in spec.variants.values())
        click.echo(f"{name} ({spec.title}; {where}): {data}" + (f", hub {spec.hub_id}" if spec.hub else "")
                   + f"; chance {chance}; licence {spec.license or 'not stated'}{options}"
                   + (f"; {spec.note}" if spec.note else ""))


@main.group("task")
def task_group() -> None:
    """Work with task files (see docs/task-files.md)."""


@task_group.command("check")
@click.argument("task_file", type=click.Path(path_type=Path))
@click.option("--lang", default=None, help="Language of the example shown (default: the task's first).")
@click.option("--split", default=None, help="Split of the example shown (default: the task's default split).")
@click.option("--seed", default=0, show_default=True, help="Seed of the template draw shown.")
@one_line_errors
def task_check(task_file: Path, lang: str | None, split: str | None, seed: int) -> None:
    """Validate a task file: load every split and language, then print the first example's statements and
    causal-LM requests. Any error is one line naming the file, key or row; nothing is written."""
    from harness.tasks.check import check_task_file

    click.echo(check_task_file(task_file, language=lang, split=split, seed=seed))


@list_group.command("models")
@one_line_errors
def list_models() -> None:
    """Model presets (bundled small models and hub presets)."""
    from harness.models.presets import PRESETS, ModelPreset
    from harness.reports.tables import markdown_table

    def size(n: int) -> str:
        return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.0f}M"

    def weights_from(p: ModelPreset) -> str:
        if p.source == "harness_dir":  # an adapter shipped in this package over a bundled base
            return f"statement-bench (harness/models/{p.package_subdir}) + {p.package}"
        return p.package or "hub only"

    rows = [[p.name, p.kind, p.hub_id, size(p.parameters), str(p.layers), str(p.hidden_size), f"{p.vocab_size:,}",
             f"{p.max_length:,}", p.languages, weights_from(p),
             p.license + ("; gated on the Hub" if p.gated and "gated" not in p.license.lower() else "")]
            for p in PRESETS.values()]
    click.echo(markdown_table(["preset", "kind", "hub id", "params", "layers", "hidden", "vocab", "max len",
                               "languages", "weights from", "licence"], rows, align="lllrrrrrlll"))
    click.echo("Hub-only presets ship their config.json (harness/models/configs/) for random-weight builds.")


@list_group.command("devices")
@one_line_errors
def list_devices() -> None:
    """Device profiles for `bench efficiency --gpu` (dense peaks, datasheet sources)."""
    from harness.efficiency.devices import ALIASES, profile_table
    from harness.reports.tables import markdown_table

    def num(value: object) -> str:
        return "–" if value is None else f"{value:g}"

    table = profile_table()
    aliases: dict[str, list[str]] = {}
    for alias, key in ALIASES.items():
        aliases.setdefault(key, []).append(alias)
    rows = [[str(r["key"]), ", ".join(aliases.get(str(r["key"]), [])), str(r["name"]), num(r["memory_gb"]),
             num(r["bandwidth_gb_s"]), num(r["bf16_tflops"]), num(r["fp16_tflops"]), num(r["fp32_tflops"])]
            for r in table]
    click.echo(markdown_table(["profile", "aliases", "device", "memory GB", "bandwidth GB/s", "bf16 TFLOP/s",
                               "fp16 TFLOP/s", "fp32 TFLOP/s"], rows, align="lllrrrrr"))
    click.echo("Dense peaks (no sparsity); fp32 = plain FP32, not TF32. `--gpu cpu` measures this machine's CPU.")
    for r in table:
        click.echo(f"{r['key']}: {r['source']}")


@list_group.command("backends")
def list_backends() -> None:
    """Registered backends (imported only when chosen)."""
    from harness.backends.registry import available

    for entry in available():
        extra = f" [extra: {entry.extra}]" if entry.extra else ""
        click.echo(f"{entry.name:10s} {entry.description}{extra}")


@main.command("report")
@click.argument("results", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Report path without extension (reports/NAME): writes NAME.md / .html / .csv and NAME-files/. "
              "Without --out the Markdown goes to stdout (no figures).")
@click.option("--format", "formats", default="md,html,csv", show_default=True,
              help="Comma-separated: md, html, csv, parquet.")
@click.option("--reference", default="seed", show_default=True, help="Published reference block: seed, or none.")
@click.option("--gpu-price", type=float, default=None, help="US$ per GPU-hour: the Pareto chart then shows accuracy "
              "vs examples per dollar.")
@click.option("--bootstrap", type=int, default=2000, show_default=True, help="Paired-bootstrap resamples.")
@click.option("--seed", type=int, default=0, show_default=True, help="Bootstrap seed.")
@click.option("--title", default="statement-bench report", show_default=True)
@include_path_option
@one_line_errors
def report_cmd(results: tuple[Path, ...], out: Path | None, formats: str, reference: str, gpu_price: float | None,
               bootstrap: int, seed: int, title: str, include_paths: tuple[str, ...]) -> None:
    """Comparison report of result files (or directories holding them): tables, plots, significance."""
    from harness.errors import DataError, UsageError
    from harness.reports.writer import write_report
    from harness.results.schema import find_result_files

    chosen = _csv(formats) or ()
    unknown = [f for f in chosen if f not in ("md", "html", "csv", "parquet")]
    if unknown or not chosen:
        raise UsageError(f"--format {formats!r}: choose from md, html, csv, parquet")
    if gpu_price is not None and gpu_price <= 0:
        raise UsageError(f"--gpu-price must be positive (got {gpu_price:g})")
    if bootstrap < 1:
        raise UsageError(f"--bootstrap must be at least 1 (got {bootstrap})")
    files = find_result_files(list(results))
    if not files:
        raise DataError(f"no result.json found under {', '.join(map(str, results))}")
    written, text = write_report(files, out, formats=chosen, reference=None if reference == "none" else reference,
                                 gpu_price_per_hour=gpu_price, bootstrap=bootstrap, seed=seed, title=title,
                                 include_paths=include_paths)
    if out is None:
        click.echo(text)
    for path in written:
        click.echo(f"report: {path}", err=True)


@main.command("compare")
@click.argument("reference", type=click.Path(path_type=Path, exists=True))
@click.argument("candidate", type=click.Path(path_type=Path, exists=True))
@click.option("--tolerance", type=click.Choice(["loglik-fp32", "loglik-bf16", "p_true-fp32", "p_true-bf16"]),
              default=None, help="Default: p_true-fp32 for encoder runs, loglik-fp32 otherwise.")
@click.option("--subset", is_flag=True, help="The candidate may have scored more examples than the reference.")
@one_line_errors
def compare_cmd(reference: Path, candidate: Path, tolerance: str | None, subset: bool) -> None:
    """Two runs sample by sample: per-sample max |Δ score|, prediction agreement, PASS/FAIL (exit 1 on FAIL)."""
    from harness.results import compare as cmp

    presets = {t.name: t for t in (cmp.LOGLIK_FP32, cmp.LOGLIK_BF16, cmp.PTRUE_FP32, cmp.PTRUE_BF16)}
    if tolerance is None:
        backend = cmp.run_label(reference).get("backend")
        tolerance = "p_true-fp32" if backend == "encoder" else "loglik-fp32"
    result = cmp.compare_runs(reference, candidate, presets[tolerance], ids="subset" if subset else "same")
    click.echo(f"{result.summary()} ({tolerance}: {presets[tolerance].describe()})")
    for d in result.worst(5):
        click.echo(f"  {d.example_id}: max |Δ| {d.max_abs_diff:.4g}, predictions {d.prediction_reference} / "
                   f"{d.prediction_candidate}")
    click.echo(str(result.verdict))
    if not result.verdict.passed:
        raise SystemExit(1)


def _register_training() -> None:
    """`bench train` / `bench statements` live in harness.training (imported lazily inside the commands)."""
    from harness.training.cli_train import statements_cmd, train_cmd

    for command in (train_cmd, statements_cmd):
        assert command.callback is not None
        command.callback = one_line_errors(command.callback)
        main.add_command(command)


_register_training()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""`bench run`: evaluate a model zero-shot on the eval tasks."""

from __future__ import annotations

import click

from harness.commands.common import (
    ALL,
    failure,
    include_path_option,
    langs_option,
    one_line_errors,
    parse_csv,
    parse_key_values,
    resumable,
    torch_options,
)


@click.command("run")
@click.option("--backend", default="encoder", show_default=True, help="Model backend (see `bench list backends`).")
@click.option("--model", default=None, help="Preset name, local directory or hub id (default: backend's default).")
@click.option("--adapter", default=None, help="PEFT adapter directory applied on top of --model.")
@click.option("--tasks", default=ALL, show_default=True, help="Comma-separated tasks, or 'all'.")
@langs_option
@click.option("--split", default=None, help="Split (default: each task's eval split).")
@click.option("--limit", type=int, default=None, help="First N examples per language.")
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for template draws.")
@torch_options(dtype_help="auto | fp32 | bf16 | fp16 (auto: from the device).",
               device_help="auto | cpu | cuda | cuda:N", threads_help="CPU threads for torch (default: torch's).")
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
@click.option("--backend-option", "backend_option_items", multiple=True, metavar="NAME=VALUE",
              help="A backend's own option, e.g. token_budget=8192 for hf (repeatable; `bench list backends` lists "
                   "each backend's options).")
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
@click.option("--num-processes", type=click.IntRange(min=1), default=1, show_default=True,
              help="Data parallel on this machine: start N processes (one per GPU) through torchrun, each scoring "
                   "a share of the examples; the result file is the one a single process writes.")
@one_line_errors
def run_cmd(backend: str, model: str | None, adapter: str | None, tasks: str, langs: str, split: str | None,
            limit: int | None, batch_size: int, seed: int, dtype: str, device: str, threads: int | None,
            max_length: int | None, prompt: str, chat_template: bool, add_bos: bool | None,
            trust_remote_code: bool, tensor_parallel_size: int | None, pipeline_parallel_size: int | None,
            prefix_caching: bool | None, max_num_batched_tokens: int | None, gpu_memory_utilization: float | None,
            distributed_executor_backend: str | None, backend_option_items: tuple[str, ...], data_source: str,
            hub_dir: str | None,
            task_options: tuple[str, ...], templates_mode: str, lm_eval_tasks: tuple[str, ...],
            templates_dir: str | None, include_paths: tuple[str, ...], output: str, quiet: bool,
            num_processes: int) -> None:
    """Evaluate a model zero-shot on the eval tasks; resumable (re-run the same command)."""
    if num_processes > 1:
        relaunch(num_processes)
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
    flags = {k: v for k, v in (("tensor_parallel_size", tensor_parallel_size),
                               ("pipeline_parallel_size", pipeline_parallel_size),
                               ("enable_prefix_caching", prefix_caching),
                               ("max_num_batched_tokens", max_num_batched_tokens),
                               ("gpu_memory_utilization", gpu_memory_utilization),
                               ("distributed_executor_backend", distributed_executor_backend)) if v is not None}
    # the vLLM flags are shortcuts for --backend-option; a flag wins over the same name given both ways
    backend_options = tuple({**dict(parse_key_values(backend_option_items, "--backend-option")), **flags}.items())
    config = RunConfig(
        backend=backend, model=model, adapter=adapter,
        # --lm-eval-task without an explicit --tasks runs only the lm-eval tasks
        tasks=() if lm_eval_tasks and click.get_current_context().get_parameter_source("tasks")
        == click.core.ParameterSource.DEFAULT else (parse_csv(tasks) or task_names(include_paths)),
        languages=parse_csv(langs), split=split, limit=limit, batch_size=batch_size, seed=seed, dtype=dtype,
        device=device, threads=threads, max_length=max_length, prompt=prompt, chat_template=chat_template,
        add_bos=add_bos, trust_remote_code=trust_remote_code,
        backend_options=backend_options,
        data_source=data_source, hub_dir=hub_dir,
        task_options=parse_key_values(task_options, "--task-option"), templates_dir=templates_dir,
        templates_mode=templates_mode, lm_eval_tasks=lm_eval_tasks, include_paths=include_paths, output_dir=output)
    plan = plan_run(config)
    with resumable(f"finished samples are kept under {output}/"):
        outcome = execute(plan, show_progress=not quiet)
    if outcome.rank != 0:  # data parallel: rank 0 reports for every process
        return
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
    processes = f" by {outcome.world_size} processes" if outcome.world_size > 1 else ""
    click.echo(f"scored {outcome.scored_now} examples now{processes}, {outcome.resumed} resumed; "
               f"wall {t['wall_seconds']:.1f}s (model load {t['model_load_seconds']:.1f}s)")
    click.echo(f"results: {outcome.result_path}\nsamples: {outcome.samples_path}")


def relaunch(num_processes: int) -> None:
    """``--num-processes N``: this same command again as N processes under torchrun (``--standalone``: one node,
    a free port), which the runner splits the examples across. Torchrun's agent runs here, quietly: a rank's own
    one-line error is the message, and its exit status the command's."""
    import logging
    import os
    import sys

    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    if os.environ.get("WORLD_SIZE") not in (None, "", "1"):
        raise failure("--num-processes: already running under a launcher (WORLD_SIZE is set); give the process "
                      "count to the launcher only", 2)
    args = sys.argv[1:]
    if not args or args[0] != "run":
        raise failure("--num-processes works from the command line (`bench run ... --num-processes N`); "
                      "otherwise start `torchrun --nproc_per_node N -m harness.cli run ...`", 2)
    kept: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg == "--num-processes":
            skip = True
        elif not arg.startswith("--num-processes="):
            kept.append(arg)
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)  # its report repeats the ranks'
    try:
        run(parse_args(["--standalone", f"--nproc_per_node={num_processes}", "-m", "harness.cli", *kept]))
    except ChildFailedError as err:
        rank, first = err.get_first_failure()
        if first.exitcode > 0:  # the rank said why, in one line
            raise SystemExit(first.exitcode) from None
        raise failure(f"process of rank {rank} was killed by signal {-first.exitcode}; finished samples are kept "
                      "— re-run the same command to resume", 1) from None
    raise SystemExit(0)

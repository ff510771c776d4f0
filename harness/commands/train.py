"""`bench train` and `bench statements`: build a statement mixture and (for train) statement-tune an encoder.

The training code (harness.training) knows nothing of the CLI; this module is its command-line front end."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

import click

from harness.commands.common import one_line_errors, resumable, torch_options
from harness.models.presets import DEFAULT_ENCODER_BASE

DEFAULT_TRAIN_DIR = "results/train"


def _mixture_options(fn: Any) -> Any:
    options = [
        click.option("--langs", default="25", show_default=True,
                     help="Language preset (en | 11 | 25) or comma-separated language codes."),
        click.option("--tasks", default="all", show_default=True,
                     help="Comma-separated task types (topic, translation, extractive_qa, wic, intent, sentiment, "
                          "exam_qa, reading_comprehension, paraphrase), or 'all'."),
        click.option("--per-task", type=int, default=1500, show_default=True,
                     help="Statements per (task type, language), half True and half False; capped by the data."),
        click.option("--template-language", type=click.Choice(["en", "translated"]), default="en",
                     show_default=True, help="English templates, or the project's machine-translated ones."),
        click.option("--translation/--no-translation", default=True, show_default=True,
                     help="Include translation-pair statements (FLORES-200)."),
        click.option("--extra-statements", multiple=True,
                     help="JSONL file of extra statements (text, label, source, language, task_type); repeatable."),
        click.option("--allow-eval-overlap", is_flag=True,
                     help="Allow sources that are eval tasks or their English origins (recorded)."),
        click.option("--seed", type=int, default=42, show_default=True,
                     help="Seed for statements, split and training."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _mixture_config(langs: str, tasks: str, per_task: int, template_language: str, translation: bool,
                    extra_statements: tuple[str, ...], allow_eval_overlap: bool, seed: int) -> Any:
    from harness.errors import UsageError
    from harness.training.mixture import MixtureConfig

    if per_task < 2:
        raise UsageError(f"--per-task must be at least 2 (got {per_task})")
    lang_value: Any = langs.strip()
    if "," in lang_value or lang_value not in ("en", "11", "25"):
        lang_value = tuple(x.strip() for x in langs.split(",") if x.strip())
    task_types = None if tasks.strip().lower() == "all" else tuple(t.strip() for t in tasks.split(",") if t.strip())
    return MixtureConfig(langs=lang_value, task_types=task_types, per_task=per_task, seed=seed,
                         template_language=template_language, translation=translation,
                         allow_eval_overlap=allow_eval_overlap, extra_sources=tuple(extra_statements))


def _command_line() -> str:
    """The command as typed (recorded in the model card so the run can be repeated)."""
    return "bench " + shlex.join(sys.argv[1:])


@click.command("statements")
@_mixture_options
@click.option("--holdout", type=float, default=0.1, show_default=True)
@click.option("--output", required=True, help="Directory for statements.jsonl and manifest.json.")
@one_line_errors
def statements_cmd(langs: str, tasks: str, per_task: int, template_language: str, translation: bool,
                   extra_statements: tuple[str, ...], allow_eval_overlap: bool, seed: int, holdout: float,
                   output: str) -> None:
    """Build the training-statement mixture (no training): statements.jsonl + manifest.json."""
    from harness.training.mixture import build_mixture, write_statements

    mixture = build_mixture(_mixture_config(langs, tasks, per_task, template_language, translation,
                                            extra_statements, allow_eval_overlap, seed))
    write_statements(mixture, Path(output))
    click.echo(_counts_table(mixture.manifest))
    click.echo(f"{len(mixture.statements)} statements -> {output}")


def _counts_table(manifest: dict[str, Any]) -> str:
    counts = manifest.get("counts") or {}
    rows: dict[str, dict[str, int]] = {}
    langs: set[str] = set()
    for key, value in counts.items():
        task, lang = key.split("/")[:2]
        total = sum(value.values()) if isinstance(value, dict) else int(value)
        rows.setdefault(task, {})[lang] = rows.get(task, {}).get(lang, 0) + total
        langs.add(lang)
    order = sorted(langs)
    lines = ["| task type | " + " | ".join(order) + " |", "|---|" + "---:|" * len(order)]
    for task in sorted(rows):
        lines.append(f"| {task} | " + " | ".join(str(rows[task].get(lang, "")) for lang in order) + " |")
    return "\n".join(lines)


@click.command("train")
@click.option("--model", default=DEFAULT_ENCODER_BASE, show_default=True,
              help="Encoder preset, local directory or hub id.")
@_mixture_options
@click.option("--method", type=click.Choice(["full", "lora", "qlora"]), default="full", show_default=True)
@click.option("--epochs", type=float, default=3.0, show_default=True)
@click.option("--max-steps", type=int, default=None, help="Stop after this many optimizer steps (overrides epochs).")
@click.option("--lr", type=float, default=None, help="Learning rate (default: 2e-6 full, 2e-4 LoRA/QLoRA).")
@click.option("--batch-size", type=int, default=16, show_default=True)
@click.option("--grad-accum", type=int, default=1, show_default=True, help="Gradient accumulation steps.")
@click.option("--warmup-ratio", type=float, default=0.1, show_default=True)
@click.option("--weight-decay", type=float, default=0.01, show_default=True)
@click.option("--max-length", type=int, default=512, show_default=True)
@click.option("--eval-every", type=int, default=500, show_default=True, help="Held-out evaluation every N steps.")
@click.option("--holdout", type=float, default=0.1, show_default=True, help="Held-out fraction of the statements.")
@click.option("--lora-r", type=int, default=16, show_default=True)
@click.option("--lora-alpha", type=int, default=32, show_default=True)
@click.option("--lora-dropout", type=float, default=0.05, show_default=True)
@click.option("--lora-targets", default=None, help="Comma-separated linear-layer names (default: attention + dense).")
@torch_options(dtype_help="auto | fp32 | bf16 | fp16 (autocast; fp16 on CUDA only, with loss scaling).",
               device_help=None, threads_help="CPU threads for torch.")
@click.option("--output", default=None,
              help=f"Model directory (default: {DEFAULT_TRAIN_DIR}/<model>-<method>-<langs>).")
@click.option("--overwrite", is_flag=True, help="Delete --output first (else: resume, or refuse if it differs).")
@click.option("--quiet", is_flag=True)
@one_line_errors
def train_cmd(model: str, langs: str, tasks: str, per_task: int, template_language: str, translation: bool,
              extra_statements: tuple[str, ...], allow_eval_overlap: bool, seed: int, method: str, epochs: float,
              max_steps: int | None, lr: float | None, batch_size: int, grad_accum: int, warmup_ratio: float,
              weight_decay: float, max_length: int, eval_every: int, holdout: float, lora_r: int, lora_alpha: int,
              lora_dropout: float, lora_targets: str | None, dtype: str, device: str, threads: int | None,
              output: str | None, overwrite: bool, quiet: bool) -> None:
    """Statement-tune an encoder; resumable (re-run the same command). Loadable by `bench run --model DIR`."""
    import shutil

    from harness.distributed import layout
    from harness.errors import UsageError
    from harness.training.distributed import check_launch
    from harness.training.mixture import build_mixture, split_statements
    from harness.training.model_setup import LoraSettings
    from harness.training.trainer import Statement, StatementTrainer, TrainConfig, resolve_trainable_base

    # under accelerate launch / torchrun: refused before any statement is built or model loaded
    check_launch(batch_size, device)
    main_process = layout().is_main  # every process runs this command; only rank 0 prints and writes
    mixture_cfg = _mixture_config(langs, tasks, per_task, template_language, translation, extra_statements,
                                  allow_eval_overlap, seed)
    lora = LoraSettings(r=lora_r, alpha=lora_alpha, dropout=lora_dropout,
                        targets=tuple(t.strip() for t in lora_targets.split(",") if t.strip()) or None
                        if lora_targets else None)
    cfg = TrainConfig(model=model, method=method, epochs=epochs, max_steps=max_steps, lr=lr, batch_size=batch_size,
                      grad_accum=grad_accum, warmup_ratio=warmup_ratio, weight_decay=weight_decay,
                      max_length=max_length, eval_every=eval_every, holdout=holdout, seed=seed, dtype=dtype,
                      device=device, lora=lora)
    cfg.check()
    resolve_trainable_base(model)  # before any statement is built
    out = Path(output or f"{DEFAULT_TRAIN_DIR}/{Path(model).name}-{method}-{langs.replace(',', '_')}")
    if overwrite and layout().world_size > 1:
        raise UsageError("--overwrite under a launcher: delete --output before launching (the processes would "
                         "race on it)")
    if overwrite and out.exists():
        shutil.rmtree(out)
    mixture = build_mixture(mixture_cfg)
    train_part, held_part = split_statements(mixture.statements, holdout=holdout, seed=seed)

    def convert(items: Any) -> list[Statement]:
        return [Statement(s.text, int(s.label), f"{s.task_type}/{s.language}") for s in items]

    log = (lambda _m: None) if quiet or not main_process else (lambda m: click.echo(m, err=True))
    log(f"{len(mixture.statements)} statements ({len(train_part)} train / {len(held_part)} held out) -> {out}")
    trainer = StatementTrainer(cfg, convert(train_part), convert(held_part), out, manifest=mixture.manifest,
                               command=_command_line(), threads=threads, progress=log)
    with resumable(f"the last checkpoint is kept in {out}/checkpoint", then="continue"):
        outcome = trainer.run()
    if not main_process:
        return
    best = outcome.best
    if best is not None:
        click.echo(f"{out}: best held-out accuracy {100 * best.accuracy:.2f}, F1 {100 * best.f1:.2f} "
                   f"(step {best.step}, n={best.n}); {outcome.steps} steps"
                   + (f", resumed from step {outcome.resumed_from}" if outcome.resumed_from else "")
                   + ("" if outcome.already_done else f", {outcome.seconds:.0f}s"))
    click.echo(f"use: bench run --backend encoder --model {out}")

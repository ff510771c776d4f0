"""`bench list tasks|models|devices|backends`."""

from __future__ import annotations

import click

from harness.commands.common import include_path_option, one_line_errors


@click.group("list")
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
    from harness.efficiency.profiles import ALIASES, profile_table
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
        for line in entry.options.describe():
            click.echo(f"{'':10s}   --backend-option {line}")

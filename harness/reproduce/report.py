"""The study's own section of the report: what ran (full study or stand-in, and its size), each step's time, and
measured-minus-published deltas by study step.

`bench report` already prints the published table and deltas for runs of the published models themselves; this
section adds the study's view, in which each eval step names the published row it reproduces (`compare:` in
paper.yaml), so a stand-in run is compared with the row it stands in for, and says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.reports.document import Block, ReportDoc, Section, Table
from harness.reproduce.execute import marker_path, read_marker, step_output
from harness.reproduce.study import Step, Study

SECTION_TITLE = "Reproduction (bench reproduce)"


def _result_of(step: Step, mode: str, out: Path) -> Path | None:
    from harness.results.schema import RESULT_FILE

    target = step_output(step.argv(mode, str(out)))
    if target is None or not target.is_dir():
        return None
    found = sorted(target.rglob(RESULT_FILE))
    return found[0] if found else None


def _measured_model(record: Any) -> str:
    """The preset, or for a statement-tuned directory its base model (from its training.json)."""
    from harness.models.recipe import read_training_recipe

    recipe = record.model.training or read_training_recipe(record.model.get("path"))
    if recipe and recipe.get("base_model"):
        return f"{recipe['base_model']} (statement-tuned: {Path(str(record.model.model)).name})"
    return str(record.model.model)


def _pct(record: Any, task: str) -> str:
    tr = record.tasks.get(task)
    return "" if tr is None else f"{100 * tr.mean_accuracy:.2f}"


def study_section(study: Study, mode: str, out: Path) -> Section:
    """Mode and size, steps with their times, and deltas against the packaged published table."""
    from harness.reports.tidy import reference_table
    from harness.results.schema import read_eval

    steps = study.steps_for(mode)
    blocks: list[Block] = []
    if mode == "stand-in":
        blocks.append(f"**Stand-in run, not the paper's study.** {study.stand_in_size}")
    else:
        blocks.append(f"Full study: {study.title}; {len(steps)} steps.")
    rows = []
    for step in steps:
        marker = read_marker(marker_path(out, step.id))
        rows.append([step.id, step.kind, step.title,
                     "this step" if marker is None else f"{marker.get('finished')} ({marker.get('seconds')} s)"])
    blocks.append(Table(["step", "kind", "what", "finished"], rows, align="llll", sortable=False))

    ref = reference_table("seed")
    published = {row["model"]: row for row in ref["rows"]}
    tasks = list(ref["tasks"])
    measured = []
    for step in steps:
        path = _result_of(step, mode, out) if step.kind == "run" else None
        if path is not None:
            record = read_eval(path)
            measured.append([step.id, step.title, _measured_model(record),
                             *[_pct(record, t) for t in tasks]])
    if measured:
        blocks.append(Table(["step", "what", "measured model", *tasks], measured, align="lll" + "r" * len(tasks),
                            sortable=False,
                            caption="Every eval step (main models, ablations, LLM baselines) by study step, whatever "
                                    "training recipe its result file records: mean accuracy over languages, %."))
    deltas = []
    for step in steps:
        if step.compare is None or step.compare not in published:
            continue
        path = _result_of(step, mode, out)
        if path is None:
            continue
        record = read_eval(path)
        row = published[step.compare]
        cells = []
        for task in tasks:
            tr = record.tasks.get(task)
            cells.append("" if tr is None else
                         f"{100 * tr.mean_accuracy:.2f} ({100 * tr.mean_accuracy - row['scores'][task]:+.2f})")
        deltas.append([step.id, _measured_model(record), row["model"], *cells])
    caption = ("Measured mean accuracy (measured minus published, points) by study step; published figures from "
               f"{ref['citation']} ({ref['caveat']})")
    if mode == "stand-in":
        caption += (" Stand-in models at reduced size stand in for the published ones: the deltas exercise the "
                    "comparison, they do not measure the paper's claim.")
    if deltas:
        blocks.append(Table(["step", "measured model", "published model", *[f"{t} (Δ)" for t in tasks]], deltas,
                            align="lll" + "r" * len(tasks), sortable=False, caption=caption))
    else:
        blocks.append("No eval step with a published counterpart has a result yet.")
    return Section(SECTION_TITLE, blocks)


def append_study_section(study: Study, mode: str, out: Path, step: Step) -> Path:
    """Append the study section to the Markdown and HTML reports that `step` (a report step) wrote; returns the
    Markdown path."""
    from harness.reports.html import section_html, slug
    from harness.reports.markdown import render_markdown

    target = step_output(step.argv(mode, str(out)))
    if target is None:
        raise ValueError(f"step {step.id}: report step without --out")
    section = study_section(study, mode, out)
    md = target.with_suffix(".md") if target.suffix != ".md" else target
    text = md.read_text(encoding="utf-8") if md.is_file() else ""
    md.parent.mkdir(parents=True, exist_ok=True)
    md.write_text(text.rstrip() + "\n\n" + render_markdown(ReportDoc("", sections=[section]), with_title=False),
                  encoding="utf-8")
    page = md.with_suffix(".html")
    if page.is_file():  # before </main>, so it sits with the other sections
        doc = page.read_text(encoding="utf-8")
        sid = slug(SECTION_TITLE)
        if "</main>" in doc and f'id="{sid}"' not in doc:
            doc = doc.replace("</main>", section_html(section, sid) + "\n</main>", 1)
            entry = f'<li class="level-2"><a href="#{sid}">{SECTION_TITLE}</a></li>'
            page.write_text(doc.replace("</ul>\n</nav>", f"{entry}\n</ul>\n</nav>", 1), encoding="utf-8")
    return md

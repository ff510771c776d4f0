"""render_html: plain unit tests (no browser) and one headless-Chromium check of the real page.

Acceptance: the HTML opens in headless Chromium with no console errors and all images loaded, makes no request
outside the file itself, and its sortable tables sort. Chromium is Debian's package (/usr/bin/chromium), driven by
playwright's Python API with ``executable_path`` (``playwright install`` and its browser downloads are never used).
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from harness.errors import DataError
from harness.reports.document import Figure, ReportDoc, Section, Table
from harness.reports.html import inline_markdown, render_html, safe_url, slug
from harness.results.schema import EvalRecord, LanguageResult, RunResult, TaskResult, as_record

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]


def write_png(path: Path, slope: float) -> Path:
    """A small real PNG drawn by matplotlib (object API: no pyplot, no global backend state)."""
    from matplotlib.figure import Figure as MplFigure

    fig = MplFigure(figsize=(2.0, 1.5), dpi=50)
    ax = fig.subplots()
    ax.plot([0, 1, 2], [0, slope, 2 * slope])
    fig.savefig(path, format="png")
    return path


def sample_doc(tmp_path: Path) -> ReportDoc:
    """Two sections, a sortable table (numbers with CIs, a bold best value, dashes, an empty cell), two figures."""
    results = Table(
        headers=["model", "accuracy", "n"],
        rows=[
            ["alpha", "53.1 [51.8, 54.4] (11 langs)", "100"],
            ["beta", "**61.0**", "9"],
            ["gamma", "–", "20"],
            ["delta", "7.5 (3 langs)", "–"],
            ["epsilon", "", "3"],
            ["zeta", "-2.0", "1"],
        ],
        caption="Accuracy % <per model>",
    )
    plain = Table(headers=["key", "value"], rows=[["device", "<script>alert(1)</script>"]], align="ll",
                  sortable=False)
    return ReportDoc(
        title="statement-bench <demo> & report",
        intro=["Built from **result files** only; see [the README](README.md) and `bench report`."],
        sections=[
            Section("Main results", [
                "Accuracy is **macro**-averaged; run `bench run --limit 100`, details at "
                "[statement-bench](https://example.org/docs?a=1&b=2).",
                results,
                Figure(write_png(tmp_path / "acc.png", 1.0), "accuracy per task"),
            ]),
            Section("Efficiency", [plain, Figure(write_png(tmp_path / "eff.png", 2.0), "max batch <log scale>")],
                    level=3, anchor="efficiency-part"),
        ],
    )


# ---- unit tests (no browser) ----------------------------------------------------------------------------------


def test_document_skeleton(tmp_path: Path) -> None:
    out = render_html(sample_doc(tmp_path))
    assert out.startswith("<!DOCTYPE html>\n<html lang=\"en\">")
    assert '<meta charset="utf-8">' in out
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in out
    assert "<title>statement-bench &lt;demo&gt; &amp; report</title>" in out
    assert "<h1>statement-bench &lt;demo&gt; &amp; report</h1>" in out
    assert "<p>Built from <strong>result files</strong> only; see <a href=\"README.md\">the README</a> and " \
           "<code>bench report</code>.</p>" in out
    # sections: id = slug(title) or the anchor; heading level from Section.level; TOC links to both
    assert '<section id="main-results">\n<h2>Main results</h2>' in out
    assert '<section id="efficiency-part">\n<h3>Efficiency</h3>' in out
    assert '<li class="level-2"><a href="#main-results">Main results</a></li>' in out
    assert '<li class="level-3"><a href="#efficiency-part">Efficiency</a></li>' in out
    assert out.index('<nav class="toc"') < out.index("<main>")


def test_no_external_resources(tmp_path: Path) -> None:
    """Nothing the browser would fetch: no <link>, no src= other than data:, no CSS url()/@import."""
    out = render_html(sample_doc(tmp_path))
    assert "<link" not in out and "@import" not in out and "url(" not in out
    assert re.findall(r'src="([a-z]+):', out) == ["data", "data"]
    assert "<script src" not in out
    assert "default-src 'none'" in out


def test_csp_hashes_match_inline_style_and_script(tmp_path: Path) -> None:
    """The CSP allows the inline <style>/<script> by hash; a mismatch would block them (and log console errors)."""
    out = render_html(sample_doc(tmp_path))

    def digest(body: str) -> str:
        return "'sha256-" + base64.b64encode(hashlib.sha256(body.encode()).digest()).decode() + "'"

    style = re.search(r"<style>(.*?)</style>", out, re.S)
    script = re.search(r"<script>(.*?)</script>", out, re.S)
    assert style and script
    assert f"style-src {digest(style.group(1))};" in out
    assert f"script-src {digest(script.group(1))};" in out


def test_no_script_without_sortable_tables() -> None:
    doc = ReportDoc("t", sections=[Section("s", [Table(["a", "b"], [["1", "2"]], sortable=False)])])
    out = render_html(doc)
    assert "<script" not in out and "script-src 'none'" in out
    assert "<button" not in out and 'class="sortable"' not in out


def test_figures_embedded_as_base64_png(tmp_path: Path) -> None:
    doc = sample_doc(tmp_path)
    out = render_html(doc)
    uris = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)" alt="([^"]*)" width="(\d+)" height="(\d+)">',
                      out)
    assert [base64.b64decode(u) for u, *_ in uris] == [(tmp_path / "acc.png").read_bytes(),
                                                          (tmp_path / "eff.png").read_bytes()]
    assert [alt for _, alt, *_ in uris] == ["accuracy per task", "max batch &lt;log scale&gt;"]
    assert [(w, h) for *_, w, h in uris] == [("100", "75"), ("100", "75")]  # 2.0 x 1.5 inches at 50 dpi
    assert "<figcaption>max batch &lt;log scale&gt;</figcaption>" in out
    assert str(tmp_path) not in out  # the report does not point at files next to it


def test_missing_figure_is_a_data_error_naming_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "plot.png"
    doc = ReportDoc("t", sections=[Section("s", [Figure(missing, "plot")])])
    with pytest.raises(DataError, match=re.escape(str(missing))):
        render_html(doc)


def test_non_png_figure_is_a_data_error(tmp_path: Path) -> None:
    fake = tmp_path / "plot.png"
    fake.write_text("not a png")
    with pytest.raises(DataError, match=r"not a PNG: .*plot\.png"):
        render_html(ReportDoc("t", sections=[Section("s", [Figure(fake, "plot")])]))


def test_table_escaping_bold_and_align(tmp_path: Path) -> None:
    out = render_html(sample_doc(tmp_path))
    assert '<td class="l">&lt;script&gt;alert(1)&lt;/script&gt;</td>' in out
    assert "<script>alert" not in out
    assert "<caption>Accuracy % &lt;per model&gt;</caption>" in out
    # default align: first column left, the rest right; sortable headers are buttons
    assert ('<tr><th scope="col" class="l"><button type="button">model</button></th>'
            '<th scope="col" class="r"><button type="button">accuracy</button></th>') in out
    assert '<tr><td class="l">beta</td><td class="r"><strong>61.0</strong></td><td class="r">9</td></tr>' in out
    # explicit align "ll", not sortable: plain headers
    assert '<tr><th scope="col" class="l">key</th><th scope="col" class="l">value</th></tr>' in out
    assert '<table class="sortable">' in out and out.count("<table>") == 1
    assert "<thead>" in out and "<tbody>" in out


def test_cell_lines_and_break_points() -> None:
    """A newline in a cell is a line break in HTML (a value over its interval; Markdown joins with a space); text
    cells may break after "/", ":" and "+" of model ids and paths, never inside markup or an entity."""
    doc = ReportDoc("t", sections=[Section("s", [Table(
        ["model", "XCOPA\n(11 langs, n=5,500)"],
        [["hf:org/model+/adapters/x", "**53.1\n[51.8, 54.4]**"], ["</b> a/ b [l](http://a/b)", "7.0"]])])])
    out = render_html(doc)
    assert '<button type="button">XCOPA<br>(11 langs, n=5,500)</button>' in out
    assert '<td class="l">hf:<wbr>org/<wbr>model+<wbr>/<wbr>adapters/<wbr>x</td>' in out
    assert '<td class="r"><strong>53.1<br>[51.8, 54.4]</strong></td>' in out
    assert '<td class="l">&lt;/b&gt; a/ b <a href="http://a/b">l</a></td>' in out

    from harness.reports.markdown import render_markdown

    text = render_markdown(doc)
    assert "| XCOPA (11 langs, n=5,500) |" in text and " **53.1 [51.8, 54.4]** |" in text


def test_table_shape_errors() -> None:
    with pytest.raises(ValueError, match="align"):
        render_html(ReportDoc("t", sections=[Section("s", [Table(["a", "b"], [["1", "2"]], align="l")])]))
    with pytest.raises(ValueError, match="3 cells, expected 2"):
        render_html(ReportDoc("t", sections=[Section("s", [Table(["a", "b"], [["1", "2", "3"]])])]))


@pytest.mark.parametrize(("text", "expected"), [
    ("plain <b> & \"q\"", "plain &lt;b&gt; &amp; &quot;q&quot;"),
    ("**bold** and **more**", "<strong>bold</strong> and <strong>more</strong>"),
    ("`a **not bold** <x>`", "<code>a **not bold** &lt;x&gt;</code>"),
    ("**bold with `code`**", "<strong>bold with <code>code</code></strong>"),
    ("[docs](https://ex.org/a?x=1&y=\"2\")", '<a href="https://ex.org/a?x=1&amp;y=&quot;2&quot;">docs</a>'),
    ("[up](../index.html#top)", '<a href="../index.html#top">up</a>'),
    ("[**b**](#sec)", '<a href="#sec"><strong>b</strong></a>'),
    ("[x](javascript:alert(1))", "[x](javascript:alert(1))"),
    ("[x](JavaScript:alert)", "[x](JavaScript:alert)"),
    ("[x](data:text/html,hi)", "[x](data:text/html,hi)"),
    ("[<i>](http://a)", '<a href="http://a">&lt;i&gt;</a>'),
    ("53.1 [51.8, 54.4] (11 langs)", "53.1 [51.8, 54.4] (11 langs)"),
    ("a ** b", "a ** b"),
    ("unclosed `code and **bold", "unclosed `code and **bold"),
])
def test_inline_markdown(text: str, expected: str) -> None:
    assert inline_markdown(text) == expected


def test_safe_url() -> None:
    assert safe_url("https://a.b/c") and safe_url("http://a") and safe_url("x/y.html") and safe_url("#s")
    assert safe_url("?q=a:b") and safe_url("/abs/path")
    assert not safe_url("javascript:x") and not safe_url("data:x") and not safe_url("file:///etc/passwd")
    assert not safe_url("vbscript:x") and not safe_url("mailto:a@b")


def test_slugs_and_unique_ids() -> None:
    assert slug("Main results (macro %)") == "main-results-macro-"
    assert slug("Efficiency") == "efficiency"
    assert slug("???") == "section"
    doc = ReportDoc("t", sections=[Section("Same"), Section("Same"), Section("Same", anchor="same-1")])
    out = render_html(doc)
    assert re.findall(r'<section id="([^"]+)">', out) == ["same", "same-1", "same-1-1"]


def test_deterministic(tmp_path: Path) -> None:
    assert render_html(sample_doc(tmp_path)) == render_html(sample_doc(tmp_path))


def test_empty_title_and_no_sections() -> None:
    out = render_html(ReportDoc(""))
    assert "<title>Report</title>" in out and "<h1>" not in out and "<nav" not in out


# ---- headless Chromium ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's chromium driven by playwright; skipped (with the reason) only where either is not installed."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not installed (Debian package chromium; .ci/run installs it)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("python package playwright not installed (pinned in the dev extra: pip install -e '.[dev]')")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, timeout=30_000)
        try:
            yield chromium
        finally:
            chromium.close()


def _first_column(page: Page) -> list[str]:
    return list(page.eval_on_selector_all("table.sortable tbody tr", "rows => rows.map(r => r.cells[0].textContent)"))


def test_opens_in_headless_chromium(browser: Browser, tmp_path: Path) -> None:
    start = time.monotonic()
    doc = sample_doc(tmp_path)
    report = tmp_path / "report.html"
    report.write_text(render_html(doc), encoding="utf-8")

    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(10_000)
    console: list[str] = []
    errors: list[str] = []
    requests: list[str] = []
    page.on("console", lambda msg: console.append(f"{msg.type}: {msg.text}"))
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.on("request", lambda req: requests.append(req.url))
    try:
        page.goto(report.as_uri(), wait_until="load")

        images = page.eval_on_selector_all("img", "imgs => imgs.map(i => [i.complete, i.naturalWidth])")
        n_figures = sum(isinstance(b, Figure) for s in doc.sections for b in s.blocks)
        assert len(images) == n_figures == 2
        assert all(complete and width > 0 for complete, width in images), images
        assert page.title() == doc.title
        # every table-of-contents link points at a section of the page
        assert page.eval_on_selector_all(
            "nav.toc a", "links => links.map(a => !!document.getElementById(a.getAttribute('href').slice(1)))"
        ) == [True, True]

        header = page.locator("table.sortable thead th").nth(1)  # "accuracy"
        assert header.get_attribute("aria-sort") is None
        header.click()
        assert header.get_attribute("aria-sort") == "ascending"
        assert _first_column(page) == ["zeta", "delta", "alpha", "beta", "gamma", "epsilon"]
        header.click()
        assert header.get_attribute("aria-sort") == "descending"
        assert _first_column(page) == ["beta", "alpha", "delta", "zeta", "gamma", "epsilon"]
        n_header = page.locator("table.sortable thead th").nth(2)  # "n": the dash last, also descending
        n_header.click()
        n_header.click()
        assert header.get_attribute("aria-sort") is None
        assert _first_column(page) == ["alpha", "gamma", "beta", "epsilon", "zeta", "delta"]
        page.locator("table.sortable thead th").nth(0).click()  # text column
        assert _first_column(page) == ["alpha", "beta", "delta", "epsilon", "gamma", "zeta"]
    finally:
        context.close()

    assert not errors, errors
    assert not [m for m in console if m.startswith("error:")], console
    outside = [u for u in requests if not u.startswith(("data:", "file:"))]
    assert not outside, outside
    assert time.monotonic() - start < 20


def test_bench_report_html_opens_with_every_image(browser: Browser, tmp_path: Path) -> None:
    """The real `bench report` output (fake-backend runs: tables, heatmaps, plots) in headless Chromium."""
    from click.testing import CliRunner

    from harness.cli import main

    for model in ("length", "random"):
        res = CliRunner().invoke(main, ["run", "--backend", "fake", "--model", model, "--tasks", "xcopa,xwinograd",
                                        "--limit", "10", "--output", str(tmp_path / "runs"), "--quiet"])
        assert res.exit_code == 0, res.output
    res = CliRunner().invoke(main, ["report", str(tmp_path / "runs"), "--out", str(tmp_path / "rep" / "r"),
                                    "--bootstrap", "200"])
    assert res.exit_code == 0, res.output
    report = tmp_path / "rep" / "r.html"
    n_figures = (tmp_path / "rep" / "r.md").read_text(encoding="utf-8").count("![")
    assert n_figures >= 3  # two heatmaps and accuracy vs parameters
    context = browser.new_context()
    page = context.new_page()
    console: list[str] = []
    errors: list[str] = []
    page.on("console", lambda msg: console.append(f"{msg.type}: {msg.text}"))
    page.on("pageerror", lambda err: errors.append(str(err)))
    try:
        page.goto(report.as_uri(), wait_until="load")
        images = page.eval_on_selector_all("img", "imgs => imgs.map(i => [i.complete, i.naturalWidth])")
        assert len(images) == n_figures and all(ok and width > 0 for ok, width in images), images
        assert page.locator("table").count() >= 5
    finally:
        context.close()
    assert not errors, errors
    assert not [m for m in console if m.startswith("error:")], console


def _wide_results(n_tasks: int) -> list[tuple[EvalRecord, Path]]:
    """Four runs with long model ids (hub ids, a checkpoint path, an adapter) on `n_tasks` tasks, most of them
    user tasks with long titles; one run scored fewer languages of one task (its cells then say so)."""
    titles = ["XCOPA", "XNLI", "XStoryCloze", "XWinograd", "COPA (English)", "StoryCloze (English)",
              "PAWS-X (7 languages)", "Belebele (subset, 4-way)", "A task with quite a long title indeed"]
    models = ["meta-llama/Llama-3.1-70B-Instruct", "CohereForAI/aya-23-35B",
              "/scratch/users/someone/checkpoints/mdeberta-v3-base-statement-tuned-25langs/checkpoint-12000",
              "FacebookAI/xlm-roberta-large"]
    langs = ["ar", "de", "en", "es", "fr", "hi", "ru", "sw", "tr", "vi", "zh"]
    out = []
    for i, model in enumerate(models):
        tasks = {}
        for j in range(n_tasks):
            acc = 0.5 + 0.013 * i + 0.007 * j
            use = langs[:6] if (i, j) == (1, 5) else langs
            per = {lang: LanguageResult(lang, 1234, 1234, acc, 0.01, acc - 0.021, acc + 0.019, 0, "files", "x.jsonl",
                                        None, False) for lang in use}
            name = f"task_{j}"
            tasks[name] = TaskResult(name, "test", "acc", per, acc, 0.004, acc - 0.011, acc + 0.009, len(per),
                                     1234 * len(per), title=titles[j], chance=25.0 if j == 7 else 50.0)
        info = {"backend": "hf" if i % 2 == 0 else "encoder", "model": model, "num_parameters": 7e10 / (i + 1),
                "adapter": "/scratch/users/someone/adapters/lora-r16-alpha32-25langs" if i == 3 else None}
        record = as_record(RunResult("1.3", f"run-{i}-0123456789ab", {}, info, {}, tasks, ""))
        out.append((record, Path(f"r{i}/result.json")))
    return out


@pytest.mark.parametrize("n_tasks", [6, 8])
def test_main_table_fits_a_1400px_window(browser: Browser, tmp_path: Path, n_tasks: int) -> None:
    """The main table of many tasks and long model ids does not scroll sideways in a 1,400 px wide window, and
    still shows every value, interval, title and model id."""
    from harness.reports.build import ReportOptions, build_report

    results = _wide_results(n_tasks)
    doc = build_report(results, ReportOptions(reference="seed", figures_dir=None)).doc
    report = tmp_path / "wide.html"
    report.write_text(render_html(doc), encoding="utf-8")
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    try:
        page.goto(report.as_uri(), wait_until="load")
        size = page.evaluate("""() => {
            const wrap = document.querySelector('#main .table-wrap'), table = wrap.querySelector('table');
            const root = document.documentElement;
            return {wrap: [wrap.scrollWidth, wrap.clientWidth], table: table.getBoundingClientRect().width,
                    page: [root.scrollWidth, root.clientWidth], columns: table.tHead.rows[0].cells.length,
                    text: table.textContent};
        }""")
        # a two-line cell still sorts by its value: the accuracy column of the last task, descending
        header = page.locator("#main table thead th").nth(3 + n_tasks - 1)
        header.click()
        header.click()
        order = page.eval_on_selector_all("#main table tbody tr", "rows => rows.map(r => r.cells[0].textContent)")
    finally:
        page.close()
    from harness.reports.tables import model_label

    assert order == [model_label(r) for r, _ in reversed(results)]  # accuracy grows with the run's index
    assert size["columns"] == 3 + n_tasks
    assert size["wrap"][0] <= size["wrap"][1], size["wrap"]  # no horizontal scroll inside the wrapper
    assert size["table"] <= size["wrap"][1] + 0.5
    assert size["page"][0] <= size["page"][1], size["page"]  # nor of the page
    text = " ".join(size["text"].split())
    for result, _ in results:
        assert f"{result.model['backend']}:{result.model['model']}" in text
        for tr in result.tasks.values():
            assert f"{100 * tr.mean_accuracy:.1f}[{100 * tr.mean_ci95_low:.1f}, {100 * tr.mean_ci95_high:.1f}]" in text
            assert tr.title and tr.title in text
    assert "(6 langs,n=7,404)" in text and "(11 langs, n=13,574)" in text  # in a cell / under a title

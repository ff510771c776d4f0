"""Render a ReportDoc as one self-contained HTML5 file (figures embedded, inline CSS and sort script, no network).

A report is often mailed around or opened from an artifact store, so it must not depend on files next to it or on
anything fetched: figures become ``data:`` URIs and a Content-Security-Policy (``default-src 'none'``, the inline
style and script allowed by hash) makes the browser refuse any other load. Output is deterministic: the same document
always gives the same string, so reports can be diffed and cached.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
from collections.abc import Iterable
from pathlib import Path

from harness.errors import DataError
from harness.reports.document import Figure, ReportDoc, Section, Table

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# Tables fit the page rather than scroll sideways: a number never wraps inside its line (td.r; a value and its
# interval are two lines, see `Table`), text cells (model ids, paths, recipes) wrap, after "/" ":" "+" first and
# anywhere as a last resort, and headers wrap at spaces. .table-wrap's scrollbar is only the last resort.
_CSS = """\
:root { color-scheme: light; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
  line-height: 1.5; color: #1f2328; background: #fff; max-width: 1200px; margin: 0 auto; padding: 1rem 1.5rem 3rem; }
h1 { font-size: 1.8rem; margin: 0.5rem 0 1rem; }
h2 { font-size: 1.4rem; margin-top: 2rem; border-bottom: 1px solid #d0d7de; padding-bottom: 0.2rem; }
h3 { font-size: 1.15rem; margin-top: 1.5rem; }
a { color: #0550ae; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 0.9em;
  background: #f3f4f6; padding: 0.1em 0.3em; border-radius: 4px; }
nav.toc { background: #f6f8fa; border: 1px solid #d0d7de; border-radius: 6px; padding: 0.5rem 1rem; margin: 1rem 0; }
nav.toc h2 { font-size: 1rem; margin: 0.3rem 0; border: 0; padding: 0; }
nav.toc ul { margin: 0.3rem 0; padding-left: 1.2rem; }
nav.toc li.level-3 { margin-left: 1.2rem; }
.table-wrap { overflow-x: auto; margin: 1rem 0; }
table { border-collapse: collapse; font-size: 0.9rem; }
caption { caption-side: top; text-align: left; font-weight: 600; padding: 0.3rem 0; }
th, td { border: 1px solid #d0d7de; padding: 0.3rem 0.6rem; }
td { vertical-align: baseline; }
td.r { white-space: nowrap; }
td.l { overflow-wrap: anywhere; }
thead th { background: #eef1f4; vertical-align: bottom; }
tbody tr:nth-child(even) { background: #f6f8fa; }
.l { text-align: left; }
.r { text-align: right; font-variant-numeric: tabular-nums; }
th button { font: inherit; color: inherit; background: none; border: 0; padding: 0; margin: 0; width: 100%;
  text-align: inherit; cursor: pointer; }
th[aria-sort="ascending"] button::after { content: " \\25B2"; }
th[aria-sort="descending"] button::after { content: " \\25BC"; }
figure { margin: 1.5rem 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #d0d7de; }
figcaption { font-size: 0.9rem; color: #57606a; margin-top: 0.3rem; }
"""

# Sorts a table.sortable by the clicked header. Numeric when the cell starts with a number ("53.1 [51.8, 54.4]"
# sorts by 53.1), text otherwise; empty / dash cells always last. A second click on the same header reverses.
_JS = """\
(function () {
  "use strict";
  var MISSING = /^[\\s\\u2013\\u2014-]*$/;
  var NUMBER = /^[+\\u2212-]?(?:\\d+(?:\\.\\d*)?|\\.\\d+)(?:[eE][+-]?\\d+)?/;
  function key(cell) {
    var text = cell ? cell.textContent.trim() : "";
    if (MISSING.test(text)) return { kind: 2, num: 0, text: "" };
    var m = NUMBER.exec(text);
    if (m) return { kind: 0, num: parseFloat(m[0].replace("\\u2212", "-")), text: text };
    return { kind: 1, num: 0, text: text };
  }
  function sortBy(table, th, col) {
    var desc = th.getAttribute("aria-sort") === "ascending";
    var headers = table.tHead.rows[0].cells;
    for (var h = 0; h < headers.length; h++) headers[h].removeAttribute("aria-sort");
    th.setAttribute("aria-sort", desc ? "descending" : "ascending");
    var body = table.tBodies[0];
    var items = Array.prototype.map.call(body.rows, function (row, i) {
      return { row: row, key: key(row.cells[col]), i: i };
    });
    items.sort(function (a, b) {
      if (a.key.kind !== b.key.kind) return a.key.kind - b.key.kind;
      var c = a.key.kind === 0 ? a.key.num - b.key.num : a.key.text.localeCompare(b.key.text);
      return (desc ? -c : c) || a.i - b.i;
    });
    items.forEach(function (item) { body.appendChild(item.row); });
  }
  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
    if (!table.tHead || !table.tBodies.length) return;
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, col) {
      th.addEventListener("click", function () { sortBy(table, th, col); });
    });
  });
})();
"""


def _csp_hash(source: str) -> str:
    """CSP source expression allowing exactly this inline <style>/<script> body (no 'unsafe-inline')."""
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode("utf-8")).digest()).decode("ascii") + "'"


def _csp(with_script: bool) -> str:
    script = _csp_hash(_JS) if with_script else "'none'"
    return (f"default-src 'none'; img-src data:; style-src {_csp_hash(_CSS)}; script-src {script}; "
            "base-uri 'none'; form-action 'none'")


# ---- the Markdown subset of paragraphs and cells: **bold**, `code`, [text](url) --------------------------------

_INLINE = re.compile(
    r"`(?P<code>[^`]+)`"
    r"|\[(?P<label>[^\]]+)\]\((?P<url>[^)\s]+)\)"
    r"|\*\*(?P<bold>.+?)\*\*",
    re.DOTALL,
)
_SCHEME = re.compile(r"^([^/?#]*):")


def safe_url(url: str) -> bool:
    """http(s) or a relative URL (path, ?query, #anchor); anything with another scheme (javascript:, data:) is not."""
    m = _SCHEME.match(url)
    return m is None or m.group(1).lower() in ("http", "https")


def inline_markdown(text: str, *, links: bool = True) -> str:
    """HTML of one paragraph or cell: text escaped, then ``**bold**``, `` `code` `` and ``[text](url)`` links.

    Code spans are literal (no bold inside). A link with an unsafe URL is shown as its escaped source text.
    """
    out: list[str] = []
    pos = 0
    for m in _INLINE.finditer(text):
        if m.group("label") is not None and not links:
            continue  # link syntax inside a link label stays text (the regex resumes after it)
        out.append(html.escape(text[pos:m.start()]))
        if m.group("code") is not None:
            out.append(f"<code>{html.escape(m.group('code'))}</code>")
        elif m.group("bold") is not None:
            out.append(f"<strong>{inline_markdown(m.group('bold'), links=links)}</strong>")
        elif safe_url(m.group("url")):
            label = inline_markdown(m.group("label"), links=False)
            out.append(f'<a href="{html.escape(m.group("url"))}">{label}</a>')
        else:
            out.append(html.escape(m.group(0)))
        pos = m.end()
    out.append(html.escape(text[pos:]))
    return "".join(out)


# ---- sections and anchors -------------------------------------------------------------------------------------


def slug(title: str) -> str:
    """GitHub's heading anchor (lower case, punctuation dropped, spaces to '-'), so links work in both formats."""
    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-") or "section"


def _section_ids(sections: Iterable[Section]) -> list[str]:
    """One unique id per section: its anchor or slug(title); repeats get -1, -2, ... as on GitHub."""
    seen: set[str] = set()
    ids = []
    for section in sections:
        base = section.anchor or slug(section.title)
        candidate, n = base, 0
        while candidate in seen:
            n += 1
            candidate = f"{base}-{n}"
        seen.add(candidate)
        ids.append(candidate)
    return ids


def _heading_level(section: Section) -> int:
    """h1 is the document title; sections map level 2 -> h2, 3 -> h3 (clamped to h2..h6)."""
    return min(max(section.level, 2), 6)


# ---- blocks ---------------------------------------------------------------------------------------------------


# a tag or entity (kept as it is), or the point after a "/", ":" or "+" inside a word (where a break may go)
_TAG_OR_BREAK = re.compile(r"(<[^>]*>|&[#\w]+;)|(?<=[^\s;>][/:+])(?=[^\s<&])")


def _cell(text: str, align: str = "r") -> str:
    """A cell's or header's HTML: each line of the text (see `Table`) on its own line. Text cells (``align`` "l")
    may also break after ``/``, ``:`` and ``+`` (model ids, paths), and anywhere as a last resort (CSS)."""
    out = inline_markdown(text).replace("\n", "<br>")
    if align == "l":
        out = _TAG_OR_BREAK.sub(lambda m: m.group(1) or "<wbr>", out)
    return out


def _table(table: Table) -> str:
    ncols = len(table.headers)
    align = table.align or "l" + "r" * (ncols - 1)
    if len(align) != ncols or set(align) - {"l", "r"}:
        raise ValueError(f"table align {align!r} needs one 'l'/'r' per column ({ncols} columns)")
    for row in table.rows:
        if len(row) != ncols:
            raise ValueError(f"table row has {len(row)} cells, expected {ncols}: {row!r}")
    cls = ' class="sortable"' if table.sortable else ""
    lines = ['<div class="table-wrap">', f"<table{cls}>"]
    if table.caption:
        lines.append(f"<caption>{inline_markdown(table.caption)}</caption>")
    if table.sortable:
        head = "".join(f'<th scope="col" class="{a}"><button type="button">{_cell(h)}</button></th>'
                       for h, a in zip(table.headers, align, strict=True))
    else:
        head = "".join(f'<th scope="col" class="{a}">{_cell(h)}</th>'
                       for h, a in zip(table.headers, align, strict=True))
    lines += ["<thead>", f"<tr>{head}</tr>", "</thead>", "<tbody>"]
    for row in table.rows:
        cells = "".join(f'<td class="{a}">{_cell(c, a)}</td>' for c, a in zip(row, align, strict=True))
        lines.append(f"<tr>{cells}</tr>")
    lines += ["</tbody>", "</table>", "</div>"]
    return "\n".join(lines)


def _png_size(data: bytes) -> tuple[int, int]:
    """Width and height from the IHDR chunk (set on <img> so the page does not jump while laying out)."""
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def _figure(figure: Figure) -> str:
    path = Path(figure.path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"figure image not found: {path}") from None
    except OSError as err:
        raise DataError(f"figure image unreadable: {path}: {err.strerror or err}") from None
    if not data.startswith(_PNG_SIGNATURE) or len(data) < 24:
        raise DataError(f"figure image is not a PNG: {path}")
    width, height = _png_size(data)
    uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    alt = html.escape(figure.caption)
    return (f'<figure>\n<img src="{uri}" alt="{alt}" width="{width}" height="{height}">\n'
            f"<figcaption>{inline_markdown(figure.caption)}</figcaption>\n</figure>")


def _block(block: Table | Figure | str) -> str:
    if isinstance(block, Table):
        return _table(block)
    if isinstance(block, Figure):
        return _figure(block)
    return f"<p>{inline_markdown(block)}</p>"


def _toc(doc: ReportDoc, ids: list[str]) -> str:
    """Links to every section, indented by heading level."""
    items = [f'<li class="level-{_heading_level(s)}"><a href="#{html.escape(i)}">'
             f"{inline_markdown(s.title, links=False)}</a></li>" for s, i in zip(doc.sections, ids, strict=True)]
    head = ['<nav class="toc" aria-label="Contents">', "<h2>Contents</h2>", "<ul>"]
    return "\n".join([*head, *items, "</ul>", "</nav>"])


def section_html(section: Section, sid: str) -> str:
    """One section as HTML (also appended to a written report, e.g. by `bench reproduce`)."""
    h = _heading_level(section)
    return "\n".join([f'<section id="{html.escape(sid)}">',
                      f"<h{h}>{inline_markdown(section.title, links=False)}</h{h}>",
                      *(_block(b) for b in section.blocks),
                      "</section>"])


def render_html(doc: ReportDoc) -> str:
    """The whole report as one HTML5 document string (raises DataError when a figure's PNG is missing)."""
    ids = _section_ids(doc.sections)
    sortable = any(isinstance(b, Table) and b.sortable for s in doc.sections for b in s.blocks)
    title = html.escape(doc.title or "Report")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f'<meta http-equiv="Content-Security-Policy" content="{_csp(sortable)}">',
        f"<title>{title}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        "<header>",
        *([f"<h1>{inline_markdown(doc.title, links=False)}</h1>"] if doc.title else []),
        *(f"<p>{inline_markdown(p)}</p>" for p in doc.intro),
        "</header>",
    ]
    if doc.sections:
        parts.append(_toc(doc, ids))
    parts.append("<main>")
    parts += [section_html(section, sid) for section, sid in zip(doc.sections, ids, strict=True)]
    parts.append("</main>")
    if sortable:
        parts.append(f"<script>{_JS}</script>")
    parts += ["</body>", "</html>"]
    return "\n".join(parts) + "\n"

"""``raysim report DIR -o report.html``: one self-contained HTML page (images inlined, no network)
for a run, an experiment, a Tune search or a fit, built from the sections of
:mod:`raysim.report.sections`. Tables sort by a click on a heading; the questions filter as you
type.
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Callable

from ..atomic import write_text_atomic
from .contents import read_contents
from .sections import SECTIONS

STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1200px;padding:0 1.2em 3em;color:#222}
h1{font-size:1.6em}h2{margin-top:2em;border-bottom:1px solid #ddd}
nav a{margin-right:1em}
table{border-collapse:collapse;font-size:12px;margin:.6em 0}
th,td{border:1px solid #ddd;padding:2px 6px}th{background:#f3f3f3;cursor:pointer}.scroll th{position:sticky;top:0}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.note{color:#555;font-size:12.5px;max-width:60em;border-left:3px solid #9bc;padding-left:.6em}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(340px,1fr));gap:8px}
figure{margin:0}figure.question{border:1px solid #eee;padding:4px}figcaption{font-size:11.5px}
img{max-width:100%}#question-search{width:30em;padding:4px}pre{font-size:11px;overflow:auto}
.scroll{max-height:32em;overflow:auto}
"""

SCRIPT = """
document.querySelectorAll('table.sortable th').forEach(function (th) {
  th.addEventListener('click', function () {
    var column = th.cellIndex;
    var body = th.closest('table').tBodies[0];
    var up = th.dataset.order !== 'up';
    th.dataset.order = up ? 'up' : 'down';
    var key = function (row) {
      var cell = row.cells[column];
      var v = cell.dataset.value !== undefined ? parseFloat(cell.dataset.value) : NaN;
      return isNaN(v) ? cell.textContent : v;
    };
    Array.from(body.rows).sort(function (a, b) {
      var x = key(a), y = key(b);
      var c = (typeof x === 'number' && typeof y === 'number') ? x - y : String(x).localeCompare(String(y));
      return up ? c : -c;
    }).forEach(function (row) { body.appendChild(row); });
  });
});
var search = document.getElementById('question-search');
if (search) {
  search.addEventListener('input', function () {
    var words = search.value.toLowerCase().split(/\\s+/).filter(Boolean), shown = 0;
    document.querySelectorAll('figure.question').forEach(function (f) {
      var hit = words.every(function (w) { return f.dataset.search.indexOf(w) >= 0; });
      f.style.display = hit ? '' : 'none';
      shown += hit ? 1 : 0;
    });
    document.getElementById('question-count').textContent = shown + ' questions';
  });
}
"""


def _anchor(title: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in title.lower()).strip("-")


def make_report(directory: str | Path, out: str | Path, score: Callable[[Path], None]) -> Path:
    """Write the report of ``directory`` to ``out`` (atomically); ``score(run)`` scores a run that
    was never scored."""
    contents = read_contents(directory, score)
    built = [(title, html) for title, section in SECTIONS if (html := section(contents)) is not None]
    nav = " ".join(f'<a href="#{_anchor(t)}">{escape(t)}</a>' for t, _ in built)
    body = "".join(f'<section id="{_anchor(t)}"><h2>{escape(t)}</h2>{html}</section>' for t, html in built)
    title = f"raysim report: {Path(directory).resolve().name}"
    page = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f"<style>{STYLE}</style></head><body><h1>{escape(title)}</h1><nav>{nav}</nav>{body}"
            f"<script>{SCRIPT}</script></body></html>")
    return write_text_atomic(out, page)

"""One self-contained HTML page per run or sweep.

Everything is inside the file: the style sheet, the pictures (SVG as ``data:`` URIs, so each
keeps its own ids), the text reports and a few lines of script that mark the page when a picture
failed to decode.  Nothing is fetched: no external CSS, script, font or image.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from html import escape

from records.result import JsonValue, RunRecord
from records.sweep import SweepFile
from reports.common import Results, check_results, fmt_time, total_throughput
from reports.compare import compare_text, verdict
from reports.latency import PERCENTILE_KEYS, latency_rows
from reports.lockgraph import lockgraph_html, run_label
from reports.lockstat import format_lockstat
from reports.perf_lock import format_contention

__all__ = ["html_page", "html_table", "run_html", "sweep_html"]

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1200px;
       padding: 0 1em; color: #1b1b1b; background: #fff; line-height: 1.4; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { font-size: 1.25em; margin-top: 1.8em;
     border-bottom: 1px solid #ddd; padding-bottom: 0.2em; } h3 { font-size: 1.05em; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.92em; }
th, td { border: 1px solid #d0d0d0; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child, td.l, th.l { text-align: left; }
th { background: #f2f2f2; }
pre { background: #f7f7f7; border: 1px solid #e0e0e0; padding: 0.6em; overflow-x: auto; font-size: 0.8em; }
img.plot { max-width: 100%; height: auto; display: block; margin: 0.8em 0; border: 1px solid #eee; }
ul.verdict li { margin: 0.2em 0; } .muted { color: #666; } .bad { color: #b00020; font-weight: bold; }
.ok { color: #1b5e20; }
"""

# Marks the page with how many pictures failed to decode (a console error names each one).
_SCRIPT = """
window.addEventListener("load", function () {
  var imgs = document.images, broken = 0;
  for (var i = 0; i < imgs.length; i++) {
    if (!imgs[i].complete || imgs[i].naturalWidth === 0) {
      broken++;
      console.error("picture failed to load: " + imgs[i].alt);
    }
  }
  document.body.setAttribute("data-images", String(imgs.length));
  document.body.setAttribute("data-broken-images", String(broken));
});
"""


def html_page(title: str, body: str) -> str:
    """A self-contained page: the report's style and script inline, nothing fetched."""
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n{body}\n"
            f"<script>{_SCRIPT}</script>\n</body>\n</html>\n")


def _img(svg: bytes, alt: str) -> str:
    data = base64.b64encode(svg).decode()
    return f'<img class="plot" alt="{escape(alt)}" src="data:image/svg+xml;base64,{data}">\n'


def html_table(headers: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> str:
    """An HTML table; the first ``left`` columns are text (left-aligned), the rest numbers (right)."""
    out = ["<table>\n<thead><tr>"]
    out += [f'<th class="l">{escape(h)}</th>' if i < left else f"<th>{escape(h)}</th>"
            for i, h in enumerate(headers)]
    out.append("</tr></thead>\n<tbody>\n")
    for row in rows:
        out.append("<tr>")
        out += [f'<td class="l">{escape(c)}</td>' if i < left else f"<td>{escape(c)}</td>"
                for i, c in enumerate(row)]
        out.append("</tr>\n")
    out.append("</tbody>\n</table>\n")
    return "".join(out)


def _h3(run: RunRecord) -> str:
    return f"<h3>{escape(run.design)}</h3>\n"


def _pre(text: str) -> str:
    return f"<pre>{escape(text)}</pre>\n"


def _json(data: JsonValue) -> str:
    return json.dumps(data, sort_keys=True, indent=1)


def _param_text(run: RunRecord, key: str) -> str:
    """A run parameter as the Runs table shows it: blank when the record has none (a lock-only
    record has no ``tasks``)."""
    return str(run.params[key]) if key in run.params else ""


def run_html(results: Results, svgs: Mapping[str, bytes],
             lockgraphs: Mapping[str, tuple[bytes | None, str]] | None = None) -> str:
    """The page of one run: ``svgs`` maps picture names (latency, throughput, ...) to SVG bytes;
    ``lockgraphs`` maps a design to its lock dependency graph (SVG) or why there is none."""
    doc = check_results(results)
    runs = doc.runs
    scen = doc.scenario
    name = scen.name
    body = [f"<h1>rmapsim: {escape(name)}</h1>\n"]
    if scen.description:
        body.append(f"<p>{escape(scen.description)}</p>\n")
    if scen.source:
        body.append(f'<p class="muted">scenario source: {escape(scen.source)}</p>\n')

    body.append("<h2>Runs</h2>\n")
    rows = []
    for r in runs:
        o = r.outcome
        rows.append([r.design, _param_text(r, "cpus"), _param_text(r, "tasks"), _param_text(r, "seed"),
                     o.reason, fmt_time(o.end_ns), f"{o.events:,}", f"{r.total_ops:,}",
                     f"{total_throughput(r):,.1f}", "passed" if r.invariants.passed else "FAILED"])
    body.append(html_table(["design", "cpus", "tasks", "seed", "outcome", "virtual time", "events", "operations",
                        "ops/s", "invariants"], rows))

    body.append("<h2>Verdict</h2>\n<ul class=\"verdict\">\n")
    body += [f"<li>{escape(line)}</li>\n" for line in verdict(doc)]
    body.append("</ul>\n")

    body.append("<h2>Latency</h2>\n")
    lrows = [[r.op, r.design, f"{r.count:,}", *(fmt_time(v) for v in r.percentiles), fmt_time(r.max_ns)]
             for r in latency_rows(doc)]
    body.append(html_table(["operation", "design", "count", *(lab for lab, _ in PERCENTILE_KEYS), "max"], lrows,
                       left=2))
    for key, alt in (("latency", "latency percentile distribution"),
                     ("throughput", "throughput by operation"),
                     ("lock_wait", "lock wait time by lock class"),
                     ("cpu_time", "CPU time split")):
        if key in svgs:
            body.append(_img(svgs[key], alt))

    body.append("<h2>Comparison</h2>\n" + _pre(compare_text(doc)))

    body.append("<h2>Lock contention (perf lock contention)</h2>\n")
    for r in runs:
        body.append(_h3(r) + _pre(format_contention(r.lock_classes())))

    body.append("<h2>Lock statistics (/proc/lock_stat)</h2>\n")
    for r in runs:
        body.append(_h3(r) + _pre(format_lockstat(r.lock_classes())))

    body.append("<h2>Lock order checker</h2>\n")
    for r in runs:
        lockdep = r.lockdep_section()
        findings = lockdep.findings
        viol = lockdep.order_violations
        cls = "bad" if findings or viol else "ok"
        body.append(_h3(r) + f'<p class="{cls}">{len(findings)} finding(s), {len(viol)} order violation(s), '
                    f"{len(lockdep.edges)} edge(s)</p>\n")
        body += [_pre(f) for f in findings]
        if viol:
            body.append(_pre("\n".join(viol)))
        body.append(lockgraph_html(r, (lockgraphs or {}).get(run_label(r))))
        if r.invariants.violations:
            body.append('<p class="bad">invariant violations</p>\n' + _pre("\n".join(r.invariants.violations)))

    body.append("<h2>Parameters and counters</h2>\n")
    for r in runs:
        detail: dict[str, JsonValue] = {"switches": r.switches, "params": r.params, "counters": r.counters,
                                        "rcu": r.rcu, "memory": r.memory, "walks": r.walks}
        detail["lock_events"] = {lk.name: dict(lk.events) for lk in r.lock_classes() if lk.events}
        body.append(f"<details><summary>{escape(r.design)}</summary>\n{_pre(_json(detail))}</details>\n")
    return html_page(f"rmapsim: {name}", "".join(body))


def sweep_html(sweep: SweepFile, table: str, svgs: Mapping[str, bytes], *, title: str | None = None,
               counts: str | None = None) -> str:
    """The page of a sweep: titled with its scenario and grid (``title``), the verdict (``counts``),
    the grid, scaling curves, the per-point table (``table``, as text) and every failed point."""
    scen = sweep.scenario
    title = title or scen.name
    body = [f"<h1>rmapsim sweep: {escape(title)}</h1>\n"]
    if scen.description:
        body.append(f"<p>{escape(scen.description)}</p>\n")
    failed = [p for p in sweep.points if p.status not in ("ok", "pending")]
    if counts:
        body.append(f'<p class="{"bad" if failed else "ok"}">{escape(counts)}</p>\n')
    grid_rows = [[k, ", ".join(map(str, v))] for k, v in sweep.grid.items()]
    body.append("<h2>Grid</h2>\n" + html_table(["key", "values"], grid_rows))
    facts = [(label, v) for label, v in (("designs", sweep.designs), ("overrides", sweep.overrides),
                                         ("code version", sweep.code)) if v]
    if facts:
        body.append("<p class=\"muted\">" + "<br>".join(
            f"{escape(label)}: {escape(json.dumps(v, sort_keys=True) if not isinstance(v, str) else v)}"
            for label, v in facts) + "</p>\n")
    for key in sorted(svgs):
        body.append(f"<h2>Scaling: {escape(key.removeprefix('scaling_'))}</h2>\n" + _img(svgs[key], key))
    if not svgs:
        body.append('<p class="muted">No scaling curve: no swept key is numeric with more than one value '
                    "(seeds are a spread, not an axis).</p>\n")
    body.append("<h2>Points</h2>\n" + _pre(table))
    if failed:
        body.append("<h2>Failed points</h2>\n")
        body += [f'<p class="bad">{escape(p.category or p.status)}</p>\n'
                 + _pre(f"{_json(p.params)}\n{p.error or ''}") for p in failed]
    return html_page(f"rmapsim sweep: {title}", "".join(body))

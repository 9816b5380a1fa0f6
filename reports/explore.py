"""An exploration's reports: the summary per design variant and each reproducer's race story.

Pure functions of ``explore.json`` (schema ``rmapsim.explore/1``): ``explore_text`` for the
terminal and ``explore.txt``, ``explore_html`` for ``explore.html``, ``story_text`` for one story
as a whiteboard timeline (virtual time, CPU, task, operation, what happened).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

from records.explore import ExploreFile, Story, StoryEvent
from reports.html import html_page, html_table

__all__ = ["explore_html", "explore_text", "story_rows", "story_text"]

_HEADERS = ("t (ns)", "cpu", "task", "in", "what")

ExploreInput = ExploreFile | Mapping[str, object]  # the typed document, or explore.json as built or read
StoryInput = Story | Mapping[str, object]


def _doc(doc: ExploreInput) -> ExploreFile:
    return doc if isinstance(doc, ExploreFile) else ExploreFile.from_json(doc)


def _story(story: StoryInput) -> Story:
    return story if isinstance(story, Story) else Story.from_json(story)


def story_rows(events: Sequence[StoryEvent]) -> list[list[str]]:
    """One row per event: time, CPU, task, operation, text."""
    return [[f"{e.t_ns:,}", "" if e.cpu is None else str(e.cpu), e.task, e.op, e.text] for e in events]


def story_text(story: StoryInput) -> str:
    """The race as a text table, headed by what went wrong and how to replay it."""
    typed = _story(story)
    rows = story_rows(typed.events)
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(_HEADERS[:-1])]
    lines = [f"race story: {typed.title}", f"  {typed.victim_text}", f"  replay: {typed.replay}", ""]
    head = "  ".join(h.rjust(w) if i == 0 else h.ljust(w) for i, (h, w) in enumerate(zip(_HEADERS, widths,
                                                                                        strict=False)))
    lines.append(head + "  what")
    for row in rows:
        cells = [row[0].rjust(widths[0]), *(c.ljust(w) for c, w in zip(row[1:4], widths[1:], strict=True))]
        lines.append("  ".join(cells) + "  " + row[4])
    return "\n".join(lines) + "\n"


def explore_text(doc: ExploreInput) -> str:
    """The summary: per variant, runs and failures by category; then each reproducer."""
    typed = _doc(doc)
    perturb = typed.perturb
    kinds = [k for k in ("shuffle",) if perturb.shuffle]
    if perturb.jitter:
        kinds.append(f"jitter {perturb.jitter:g}")
    if perturb.preemptions:
        kinds.append(f"{perturb.preemptions} preemptions")
    lines = [f"explore {typed.scenario_name}: {typed.runs_per_variant} runs per design (seeds "
             f"{typed.seed_base}..{typed.seed_base + typed.runs_per_variant - 1}; run 0 unperturbed, the others "
             f"{', '.join(kinds) or 'unperturbed'})"]
    if not typed.complete:
        lines.append("  (incomplete: interrupted)")
    for label, s in typed.summary.items():
        cats = ", ".join(f"{c} {n}" for c, n in s.by_category.items())
        verdict = "sound" if not s.failed else f"FAILS ({cats})"
        lines.append(f"  {label}: {s.runs} runs, {s.failed} failed: {verdict}")
    for rep in typed.reproducers:
        lines.append(f"  {rep.file}: {rep.category} (run {rep.from_run}, shrunk in {rep.shrink_runs} "
                     f"runs to {rep.perturb_text}): {rep.detail}")
    return "\n".join(lines) + "\n"


def explore_html(doc: ExploreInput) -> str:
    typed = _doc(doc)
    name = typed.scenario_name
    parts = [f"<h1>rmapsim explore: {escape(name)}</h1>", f"<pre>{escape(explore_text(typed))}</pre>"]
    rows = [[label, str(s.runs), str(s.failed),
             ", ".join(f"{c} {n}" for c, n in s.by_category.items()) or "-",
             "sound" if not s.failed else "fails"] for label, s in typed.summary.items()]
    parts.append("<h2>Designs</h2>")
    parts.append(html_table(["design", "runs", "failed", "by category", "verdict"], rows, left=1))
    for rep in typed.reproducers:
        story = rep.story
        parts.append(f"<h2>{escape(rep.file)}: {escape(rep.category)}</h2>")
        parts.append(f"<p>{escape(rep.detail)}</p>")
        if story is None:
            parts.append("<p class=\"muted\">no story: this failure has no victim folio to follow</p>")
            continue
        parts.append(f"<p>{escape(story.victim_text)}<br>replay: <code>{escape(story.replay)}</code></p>")
        parts.append(html_table(list(_HEADERS), story_rows(story.events), left=5))
    return html_page(f"rmapsim explore: {name}", "\n".join(parts))

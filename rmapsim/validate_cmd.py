"""``rmapsim validate``: reproduce the published kernel results (reference §4) and say which hold.

Runs the checks of :mod:`workloads.validate` (small sizes by default, the published sizes with
``--full``), prints a table (check, verdict, simulated figure, published figure, source), each
claim with its expected direction and range, the notes, and the cost-model constants that still
have no source; writes ``validate.json`` and a self-contained ``validate.html`` into ``--out``
(default ``rmapsim-out/validate``).  ``--json`` prints one object ``{"checks": [{"id", "claim", "source",
"value", "expected", "passed"}, ...]}`` instead.  Exit status 1 when a check fails.

Registered on the command line by :func:`add_parser` (called from ``rmapsim.cli.build_parser``).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING

from records.result import RecordError, json_list, json_obj

if TYPE_CHECKING:
    from rmapsim.runs import Subcommands

__all__ = ["DEFAULT_OUT", "add_parser", "cmd_validate", "validate_html", "validate_text"]

DEFAULT_OUT = Path("rmapsim-out/validate")


def add_parser(sub: Subcommands) -> argparse.ArgumentParser:
    """Register ``validate`` on the ``rmapsim`` subcommands."""
    p: argparse.ArgumentParser = sub.add_parser(
        "validate", help="reproduce the published kernel results (reference §4); exit 1 if one fails")
    p.add_argument("--full", action="store_true", help="the published sizes (minutes) instead of the small ones")
    p.add_argument("--json", action="store_true",
                   help='print one JSON object {"checks": [{id, claim, source, value, expected, passed}, ...]}')
    p.add_argument("--out", help=f"output folder for validate.json and validate.html (default {DEFAULT_OUT})")
    p.add_argument("--quiet", action="store_true", help="no progress or chatter")
    p.add_argument("--check", action="append", metavar="ID", help="run only this check, e.g. H5a (repeatable)")
    p.add_argument("--seed", type=int, help="run every validation scenario at this seed instead of its own")
    p.set_defaults(func=cmd_validate)
    return p


def _text(data: Mapping[str, object], key: str, what: str) -> str:
    value = data[key]
    if not isinstance(value, str):
        raise RecordError(f"validate.json {what}.{key}: expected a string, got {value!r}")
    return value


@dataclass(frozen=True)
class _Check:
    """One entry of a validate.json document's ``checks``, as the reports show it."""

    id: str
    claim: str
    source: str
    published: str
    value_text: str
    expected: str
    passed: bool
    notes: tuple[str, ...]
    details: object  # the check's own figures, shown as JSON

    @classmethod
    def of(cls, value: object, what: str) -> _Check:
        c = json_obj(value, f"validate.json {what}")
        return cls(id=_text(c, "id", what), claim=_text(c, "claim", what), source=_text(c, "source", what),
                   published=_text(c, "published", what), value_text=_text(c, "value_text", what),
                   expected=_text(c, "expected", what), passed=bool(c["passed"]),
                   notes=tuple(str(n) for n in json_list(c["notes"], f"validate.json {what}.notes")),
                   details=c["details"])


def _checks(doc: Mapping[str, object]) -> list[_Check]:
    return [_Check.of(c, f"checks[{i}]") for i, c in enumerate(json_list(doc["checks"], "validate.json checks"))]


def _constants(doc: Mapping[str, object]) -> list[list[str]]:
    """The unsourced constants as rows: name, value, what the sources say."""
    rows = []
    for i, value in enumerate(json_list(doc.get("unsourced_constants", []), "validate.json unsourced_constants")):
        k = json_obj(value, f"validate.json unsourced_constants[{i}]")
        rows.append([str(k["name"]), str(k["value"]), str(k["note"])])
    return rows


def _verdict(check: _Check) -> str:
    return "pass" if check.passed else "FAIL"


def validate_text(doc: Mapping[str, object], wall_s: float | None = None) -> str:
    """The console report of a validate.json document."""
    from reports.common import format_table

    checks = _checks(doc)
    rows = [[c.id, _verdict(c), c.value_text, c.published, c.source] for c in checks]
    at = f", seed {doc['seed']}" if "seed" in doc else ""
    out = [f"Published kernel results, reproduced ({doc['mode']} sizes{at})\n\n",
           format_table(["check", "result", "simulated", "published", "source"], rows, align="lllll")]
    out.append("\nClaims and expected direction/range\n")
    for c in checks:
        out.append(f"  {c.id:<4} {c.claim}\n       expected: {c.expected or '-'}\n")
    notes = [(c.id, n) for c in checks for n in c.notes]
    if notes:
        out.append("\nNotes\n")
        out += [f"  {cid:<4} {note}\n" for cid, note in notes]
    crows = _constants(doc)
    if crows:
        out.append(f"\nCost model constants without a source ({len(crows)}; mm/costs.py)\n")
        out.append(format_table(["constant", "value", "what the sources say"], crows, align="lrl", indent="  "))
    passed = sum(1 for c in checks if c.passed)
    took = f", {wall_s:.1f} s" if wall_s is not None else ""
    out.append(f"\n{passed} of {len(checks)} checks passed ({doc['mode']} sizes{took})\n")
    return "".join(out)


def validate_html(doc: Mapping[str, object]) -> str:
    """A self-contained page (inline style, no external resource) for a validate.json document."""
    from reports.html import html_page, html_table

    checks = _checks(doc)
    passed = sum(1 for c in checks if c.passed)
    body = ["<h1>rmapsim validate</h1>\n",
            f"<p>Published kernel results (reference §4) reproduced at the <b>{escape(str(doc['mode']))}</b> sizes"
            f"{', seed ' + escape(str(doc['seed'])) if 'seed' in doc else ''}: "
            f'<span class="{"ok" if passed == len(checks) else "bad"}">{passed} of {len(checks)} checks passed'
            f"</span>.</p>\n", "<h2>Checks</h2>\n"]
    rows = [[c.id, _verdict(c), c.claim, c.source, c.value_text, c.expected or "-"] for c in checks]
    body.append(html_table(["check", "result", "claim", "source", "simulated", "expected (published)"], rows, left=6))
    notes = [(c.id, n) for c in checks for n in c.notes]
    if notes:
        body.append("<h2>Notes</h2>\n<ul>\n")
        body += [f"<li><b>{escape(cid)}</b> {escape(note)}</li>\n" for cid, note in notes]
        body.append("</ul>\n")
    body.append("<h2>Details</h2>\n")
    for c in checks:
        detail = json.dumps(c.details, sort_keys=True, indent=1)
        body.append(f"<details><summary>{escape(c.id)}: {escape(c.value_text)}</summary>\n"
                    f"<pre>{escape(detail)}</pre></details>\n")
    crows = _constants(doc)
    if crows:
        body.append(f"<h2>Cost model constants without a source ({len(crows)})</h2>\n")
        body.append(html_table(["constant", "value", "what the sources say"], crows))
    return html_page("rmapsim validate", "".join(body))


def cmd_validate(args: argparse.Namespace) -> int:
    """Run the checks, print, write OUT/validate.json and OUT/validate.html; 1 if a check failed."""
    from rmapsim.outputs import uninterrupted
    from rmapsim.progress import Progress
    from rmapsim.runs import arg_list, check_out, opt_arg
    from workloads.record import atomic_write, dump_json
    from workloads.validate import CHECKS, run_validation

    known = [c.id for c in CHECKS]
    only = arg_list(args, "check") or None  # --check ID...
    if only:
        unknown = [c for c in only if c not in known]
        if unknown:
            from rmapsim import diag

            diag.error("bad_input", f"rmapsim: error: --check {unknown[0]}: unknown check; allowed: {', '.join(known)}")
            return 2
    seed = opt_arg(args, "seed", int)
    if seed is not None:  # the scenarios' own check of run.seed, before anything runs
        from workloads.scenario import ScenarioError, load_scenario
        from workloads.validate.common import SCENARIO_DIR

        try:
            load_scenario(SCENARIO_DIR / "n4-read-fault.toml", {"run.seed": seed}, flags={"run.seed": "--seed"})
        except ScenarioError as exc:
            from rmapsim import diag

            diag.error("bad_input", f"rmapsim: error: {exc}")
            return 2
    check_out(args, DEFAULT_OUT)  # before the checks run, not after
    quiet = bool(getattr(args, "quiet", False))
    wanted = len(only) if only else len(CHECKS)
    started = time.perf_counter()  # wall time is shown, never saved: validate.json stays reproducible
    with Progress("validate", total=wanted, enabled=not quiet) as progress:
        doc = run_validation(full=bool(getattr(args, "full", False)), only=only or None, seed=seed,
                             on_done=lambda _result: progress.advance())
    given = opt_arg(args, "out", str)
    out = Path(given) if given else DEFAULT_OUT

    def write() -> None:  # both files or, interrupted before, neither
        atomic_write(out / "validate.json", dump_json(doc))
        atomic_write(out / "validate.html", validate_html(doc))

    uninterrupted(write)
    if getattr(args, "json", False):
        print(json.dumps({"checks": [{k: c[k] for k in ("id", "claim", "source", "value", "expected", "passed")}
                                     for c in doc["checks"]]}, sort_keys=True))
    else:
        print(validate_text(doc, wall_s=time.perf_counter() - started), end="")
        if not quiet:
            print(f"\nwrote {out / 'validate.json'} and {out / 'validate.html'}")
    return 0 if doc["passed"] else 1

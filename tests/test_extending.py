"""The README's "Extending" examples, run as written: a lock model, an instrument, a report.

Each ``# file: PATH`` block is executed as that module; each one-line block is the registration
the README says it takes, evaluated in the registry it names.
"""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest

from tests.builds import COMPILED

ROOT = Path(__file__).resolve().parent.parent


def _blocks() -> tuple[dict[str, str], list[str]]:
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Extending\n", 1)[1].split("\n## ", 1)[0]
    files: dict[str, str] = {}
    lines: list[str] = []
    for code in re.findall(r"```python\n(.*?)```", section, flags=re.S):
        first, _, rest = code.partition("\n")
        if first.startswith("# file: "):
            files[first.removeprefix("# file: ").strip()] = rest
        else:
            assert code.count("\n") == 1, f"a registration is one line: {code!r}"
            lines.append(code.strip())
    return files, lines


FILES, REGISTRATIONS = _blocks()


def _module(path: str) -> types.ModuleType:
    module = types.ModuleType(Path(path).stem)
    exec(compile(FILES[path], path, "exec"), module.__dict__)
    return module


def _registration(key: str) -> str:
    (line,) = [r for r in REGISTRATIONS if r.startswith(f'"{key}"')]
    return "{" + line + "}"


def test_the_readme_shows_three_modules_and_their_registrations() -> None:
    assert set(FILES) == {"concurrency/ticket_lock.py", "longest_hold.py", "holds.py", "reports/forks.py"}
    assert len(REGISTRATIONS) == 2
    # Each names an existing registry: where the README says the line goes.
    contract = (ROOT / "tests/concurrency/test_lock_contract.py").read_text()
    assert "MODELS: dict[str, Callable[[], Model]] = {" in contract
    assert "TEXT_REPORTS: dict[str, Callable[[Results], str]] = {" in (ROOT / "reports/__init__.py").read_text()


@pytest.mark.skipif(COMPILED, reason="an interpreted lock model cannot subclass the compiled SimLock: on the compiled "
                    "build a new lock model is compiled with the rest (RMAPSIM_MYPYC=1 pip install .)")
def test_the_ticket_lock_keeps_the_lock_contract(monkeypatch: pytest.MonkeyPatch) -> None:
    """Registered as the README says, the ticket lock passes every test of the lock contract."""
    from tests.concurrency import test_lock_contract as contract

    ticket = _module("concurrency/ticket_lock.py")
    for name, make in eval(_registration("ticket"), {"_generic": contract._generic,
                                                     "TicketLock": ticket.TicketLock}).items():
        monkeypatch.setitem(contract.MODELS, name, make)
    for ctx_switch_ns in (0, 700):
        contract.test_mutual_exclusion_and_everyone_finishes("ticket", ctx_switch_ns)
    contract.test_oversubscribed_cpus("ticket")
    contract.test_oversubscribed_cpus_with_load_balancing("ticket")
    contract.test_statistics_match_with_trylocks_mixed_in("ticket")
    contract.test_trylock_fails_when_held_and_succeeds_when_free("ticket")
    contract.test_waiters_sleep_or_spin_as_the_model_says("ticket")
    contract.test_trylock_by_the_owner_never_succeeds("ticket")
    for misuse in contract.MISUSES:
        contract.test_misuse_raises_at_once("ticket", misuse)


def test_the_instrument_hears_the_lock_releases(monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "longest_hold", _module("longest_hold.py"))
    _module("holds.py")
    longest = int(capsys.readouterr().out.strip())
    assert 0 < longest < 1_000_000


def test_the_report_is_written_and_rerendered(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import reports
    from tests.reports.tiny import tiny_results

    forks = _module("reports/forks.py")
    for name, fn in eval(_registration("forks.txt"), {"forks_text": forks.forks_text}).items():
        monkeypatch.setitem(reports.TEXT_REPORTS, name, fn)
    results = tiny_results()
    written = reports.render_run(results, tmp_path)
    assert tmp_path / "forks.txt" in written
    lines = (tmp_path / "forks.txt").read_text().splitlines()
    assert lines[0].split() == ["design", "forks", "p99", "us"]
    assert [line.split()[0] for line in lines[1:]] == [run["design"] for run in results["runs"]]

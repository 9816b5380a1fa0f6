"""One source for every scenario parameter: workloads.scenario.PARAMS.  The Scenario dataclass,
``--set`` on a Python scenario, ``rmapsim list`` and the command line's help come from it (the
README's table: tests/test_readme.py)."""

from __future__ import annotations

import argparse
import dataclasses

from rmapsim.cli import build_parser
from workloads.actor_kinds import as_list
from workloads.scenario import PARAMS, SWITCH_SECTIONS, Scenario, flag_help, set_help, switch_help, toml_literal


def test_every_scenario_attribute_of_the_table_has_its_default() -> None:
    fields = {f.name: f for f in dataclasses.fields(Scenario)}
    for key, (attr, param) in PARAMS.items():
        if attr is None:
            continue
        assert attr in fields, f"{key}: Scenario has no attribute {attr!r}"
        default = fields[attr].default
        assert default == (tuple(as_list(param.default, key)) if param.type is list else param.default), key
        # the attribute's annotation (a string: the module has postponed annotations) is the table's type
        declared = str(fields[attr].type).split(" | ")[0].split("[")[0]
        assert declared == ("tuple" if param.type is list else param.type.__name__), f"{key}: {fields[attr].type}"


def test_list_shows_every_lock_and_checker_switch_with_the_table_help() -> None:
    lines = switch_help()
    for key, (_, param) in PARAMS.items():
        if key.partition(".")[0] in SWITCH_SECTIONS:
            assert lines[key] == f"{param.help} (default {toml_literal(param.default)})"
    assert any(key.startswith("switches.anon_vma.") for key in lines)


def test_the_command_line_help_comes_from_the_table() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    run = sub.choices["run"]
    helps = {a.dest: a.help for a in run._actions}
    assert helps["set"] == set_help()
    assert helps["executor"] == flag_help("run.executor")
    assert PARAMS["run.executor"][1].help in flag_help("run.executor")
    for section in dict.fromkeys(key.partition(".")[0] for key in PARAMS):
        assert f"{section}.*" in set_help()

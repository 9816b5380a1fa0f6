"""Each hook table lists exactly the hooks it declares, and each is a hook of its base instrument."""

from __future__ import annotations

import inspect

import pytest

from concurrency.instrument import Hooks, HookTable
from mm.instrument import MmHooks
from tests.builds import COMPILED


@pytest.mark.skipif(COMPILED, reason="a compiled class keeps no annotations: the pure build checks the sources")
@pytest.mark.parametrize("table", [Hooks, MmHooks])
def test_hook_names_are_the_declared_hooks(table: type[HookTable]) -> None:
    declared = tuple(n for n in inspect.get_annotations(table) if n.startswith("on_"))
    assert table.hook_names == declared
    for name in declared:
        assert callable(getattr(table.base, name)), name


@pytest.mark.parametrize("table", [Hooks, MmHooks])
def test_every_hook_is_none_until_an_instrument_overrides_it(table: type[HookTable]) -> None:
    hooks = table()
    assert all(getattr(hooks, name) is None for name in table.hook_names)

    class Listener(table.base):  # type: ignore[name-defined,misc]
        pass

    name = table.hook_names[0]
    setattr(Listener, name, lambda self, *args: None)
    hooks.add(Listener())
    assert getattr(hooks, name) is not None
    assert all(getattr(hooks, other) is None for other in table.hook_names[1:])

"""Bad input from a file the user wrote: the one error shape every loader raises.

``file:line: key: message`` (the line when one is known, the key path when one applies); the
command line turns it into exit status 2 without a traceback.  Scenario and lock-order files
raise its subclass ``workloads.inputfile.ScenarioError``; unwritable outputs ``rmapsim.outputs.OutputError``.
"""

from __future__ import annotations

from mypy_extensions import mypyc_attr

__all__ = ["InputError", "spell"]


@mypyc_attr(native_class=False, allow_interpreted_subclasses=True)  # an exception: a plain class
class InputError(ValueError):
    def __init__(self, file: str, line: int | None, key: str, message: str) -> None:
        where = f"{file}:{line}" if line else file
        super().__init__(f"{where}: {key}: {message}" if key else f"{where}: {message}")
        self.file = file
        self.line = line
        self.key = key
        self.message = message


def spell(value: object) -> str:
    """``value`` as a TOML file or ``--set`` would spell it (``true``, ``"rcu"``, ``[1, 2]``), so a
    message quotes the user's own spelling, never Python's (``True``, ``'rcu'``)."""
    import json
    import math

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(spell(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {spell(v)}" for k, v in value.items()) + "}"
    if value is None:
        return "nothing"
    if hasattr(value, "isoformat"):
        return str(value.isoformat())
    return f"a {type(value).__name__}"

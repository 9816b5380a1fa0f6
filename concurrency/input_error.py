"""Bad input from a file the user wrote: the one error shape every loader raises.

``file:line: key: message`` (the line when one is known, the key path when one applies); the
command line turns it into exit status 2 without a traceback.  Scenario files
(``workloads.scenario.ScenarioError``) and lock-order files (``concurrency.lockdep.OrderFileError``)
are its subclasses.
"""

from __future__ import annotations

from mypy_extensions import mypyc_attr

__all__ = ["InputError"]


@mypyc_attr(native_class=False, allow_interpreted_subclasses=True)  # an exception: a plain class
class InputError(ValueError):
    def __init__(self, file: str, line: int | None, key: str, message: str) -> None:
        where = f"{file}:{line}" if line else file
        super().__init__(f"{where}: {key}: {message}" if key else f"{where}: {message}")
        self.file = file
        self.line = line
        self.key = key
        self.message = message

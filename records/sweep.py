"""``sweep.json`` (``rmapsim.sweep/1``, written by rmapsim/sweep.py) as typed, frozen classes: what
the sweep reports read.  :meth:`SweepFile.from_json` checks every key the reports read; a missing
or mistyped one is a :class:`records.result.RecordError` naming its path.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from records.result import JsonObject, JsonValue, _json, _json_obj, _keys, _list, _obj, _str, _str_list
from records.schema import SWEEP_SCHEMA

__all__ = ["SweepFile", "SweepPoint", "SweepScenario"]


def _opt_str(data: Mapping[str, object], key: str, path: str) -> str | None:
    value = data.get(key)  # optional key: absent and null both read as None
    return None if value is None else _str(value, f"{path}.{key}")


@dataclass(frozen=True, slots=True)
class SweepPoint:
    """One grid point: its parameters, its status (``ok``, ``failed``, ``pending``), why it failed
    (``error``, ``category``), each design run's failure categories (``designs``, empty for a
    design that passed or a point recorded without them) and its result file, relative to the
    sweep folder (None when it has none)."""

    params: JsonObject
    status: str
    error: str | None
    category: str | None
    designs: dict[str, tuple[str, ...]]
    result: str | None

    # the point's identity, its key and its categories are the sweep's own bookkeeping (resume)
    _BOOKKEEPING = ("identity", "key", "categories")

    @classmethod
    def from_json(cls, value: object, path: str) -> SweepPoint:
        data = _obj(value, path)
        _keys(data, path, ("params", "status", "error", "result"), ("category", "designs", *cls._BOOKKEEPING))
        designs: dict[str, tuple[str, ...]] = {}
        for design, verdict in _obj(data.get("designs") or {}, f"{path}.designs").items():
            at = f"{path}.designs.{design}"
            entry = _obj(verdict, at)
            _keys(entry, at, ("categories",), ("detail",))
            designs[design] = _str_list(entry["categories"], f"{at}.categories")
        return cls(_json_obj(data["params"], f"{path}.params"), _str(data["status"], f"{path}.status"),
                   _opt_str(data, "error", path), _opt_str(data, "category", path), designs,
                   _opt_str(data, "result", path))


@dataclass(frozen=True, slots=True)
class SweepScenario:
    """The swept scenario: its name, description and file."""

    name: str
    description: str
    source: str

    @classmethod
    def from_json(cls, value: object, path: str) -> SweepScenario:
        data = _obj(value, path)
        _keys(data, path, ("name", "description", "source"), ("sha256",))
        return cls(*(_str(data[k], f"{path}.{k}") for k in ("name", "description", "source")))


@dataclass(frozen=True, slots=True)
class SweepFile:
    """``sweep.json``: the scenario, the grid (key -> values, in the order swept), the points; the
    designs, the overrides every point shares and the code version, when recorded."""

    scenario: SweepScenario
    grid: dict[str, tuple[JsonValue, ...]]
    points: tuple[SweepPoint, ...]
    designs: JsonValue
    overrides: JsonValue
    code: JsonValue

    @classmethod
    def from_json(cls, value: object) -> SweepFile:
        data = _obj(value, "sweep")
        if data.get("schema") != SWEEP_SCHEMA:
            # a plain ValueError, as before the typed reader: `rmapsim report` names its type
            raise ValueError(f"not a sweep file: schema is {data.get('schema')!r}, expected {SWEEP_SCHEMA!r}")
        _keys(data, "sweep", ("schema", "scenario", "grid", "points"), ("designs", "overrides", "code"))
        grid = {k: tuple(_json(v, f"sweep.grid.{k}[{i}]") for i, v in enumerate(_list(vals, f"sweep.grid.{k}")))
                for k, vals in _obj(data["grid"], "sweep.grid").items()}
        points = _list(data["points"], "sweep.points")
        return cls(SweepScenario.from_json(data["scenario"], "sweep.scenario"), grid,
                   tuple(SweepPoint.from_json(p, f"sweep.points[{i}]") for i, p in enumerate(points)),
                   _json(data.get("designs"), "sweep.designs"), _json(data.get("overrides"), "sweep.overrides"),
                   _json(data.get("code"), "sweep.code"))

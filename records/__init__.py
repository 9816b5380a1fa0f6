"""The bottom layer: what every layer writes or reads of a result, and nothing else.

* :mod:`records.schema` — the schema names of every file the simulator writes (one place each);
* :mod:`records.files` — ``atomic_write`` (never a half-written file) and ``dump_json`` (sorted
  keys: the same data gives the same bytes).

It imports no other package of the project, so the producers (workloads/, rmapsim/) and the
readers (reports/) share it without importing one another.
"""

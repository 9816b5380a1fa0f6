"""Engine vs SimPy on the contended-mutex model: ``python benchmarks/engine.py [--json]``."""

from __future__ import annotations

import json
import sys

from rmapsim.bench import format_engine_bench, run_engine_bench


def main() -> int:
    bench = run_engine_bench()
    if "--json" in sys.argv[1:]:
        print(json.dumps(bench.to_dict(), sort_keys=True))
    else:
        print(format_engine_bench(bench))
    return 0 if bench.agree else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""The ``rmapsim`` command line."""

from __future__ import annotations

import argparse
import json
import sys

__all__ = ["main"]


def _bench(args: argparse.Namespace) -> int:
    from rmapsim.bench import format_engine_bench, run_engine_bench

    if args.what != "engine":
        print(f"rmapsim bench: unknown benchmark {args.what!r}; allowed: engine", file=sys.stderr)
        return 2
    bench = run_engine_bench(repeats=args.repeats)
    if args.json:
        print(json.dumps(bench.to_dict(), sort_keys=True))
    else:
        print(format_engine_bench(bench))
    return 0 if bench.agree else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rmapsim", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    bench = sub.add_parser("bench", help="benchmarks (engine vs SimPy)")
    bench.add_argument("what", nargs="?", default="engine", help="benchmark to run (engine)")
    bench.add_argument("--json", action="store_true", help="print one JSON object")
    bench.add_argument("--repeats", type=int, default=3, help="runs per simulator; the best counts")
    bench.set_defaults(func=_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args(["bench", "engine"])
    result: int = args.func(args)
    return result

"""`python -m bench [--quick] [--only NAME ...]`: run every bench/bench_*.py, write the report."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from bench.machine import REPO, describe
from bench.report import render_markdown, write_chart
from bench.runner import discover, run_module


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="one round of each metric")
    parser.add_argument("--only", action="append", default=[], metavar="NAME",
                        help="run only bench_NAME (repeatable)")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks.md",
                        help="markdown report path (the PNG goes next to it)")
    args = parser.parse_args(argv)

    modules = discover()
    if args.only:
        unknown = set(args.only) - {m.split("bench_", 1)[1] for m in modules}
        if unknown:
            parser.error(f"no such benchmark: {', '.join(sorted(unknown))}; have "
                         f"{', '.join(m.split('bench_', 1)[1] for m in modules)}")
        modules = [m for m in modules if m.split("bench_", 1)[1] in args.only]
    machine = describe()
    started = time.monotonic()
    results = []
    for name in modules:
        print(f"== {name}", flush=True)
        t0 = time.monotonic()
        got = run_module(name, args.quick)
        for r in got:
            print(f"   {r.metric}: {r.status} u={r.unicloud} b={r.baseline}", flush=True)
        print(f"   ({time.monotonic() - t0:.0f} s)", flush=True)
        results += got
    elapsed = time.monotonic() - started
    chart = args.out.with_suffix(".png")
    has_chart = write_chart(results, chart)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render_markdown(results, machine, quick=args.quick, elapsed_s=elapsed,
                                        chart_name=chart.name if has_chart else None))
    print(f"wrote {args.out}" + (f" and {chart}" if has_chart else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())

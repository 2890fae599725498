"""Runs every bench/bench_*.py and prints one table: figure, baseline, ratio."""

from __future__ import annotations

import argparse
import importlib
import sys
import tempfile
import time
import traceback
from pathlib import Path

from bench.common import BenchContext, BenchRow


def _num(value: float) -> str:
    if value != value:  # NaN
        return "n/a"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def main() -> int:
    parser = argparse.ArgumentParser(description="Noderr benchmarks")
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    parser.add_argument("only", nargs="*", help="benchmark module names (default: all)")
    args = parser.parse_args()
    names = args.only or sorted(p.stem for p in Path(__file__).parent.glob("bench_*.py"))
    rows: list[BenchRow] = []
    failures: list[str] = []
    for name in names:
        module = importlib.import_module(f"bench.{name}")
        with tempfile.TemporaryDirectory(prefix=f"noderr-{name}-") as tmp:
            started = time.monotonic()
            print(f"== {name} …", flush=True)
            try:
                got = module.run(BenchContext(workdir=Path(tmp), quick=args.quick))
            except Exception:
                traceback.print_exc()
                failures.append(name)
                continue
            rows.extend(got)
            print(f"   done in {time.monotonic() - started:.1f}s", flush=True)
    print()
    header = f"{'area':<10} {'figure':<60} {'value':>10} {'unit':<8} {'baseline (same run)':<46} {'value':>10} {'ratio':>7}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r.area:<10} {r.figure[:60]:<60} {_num(r.value):>10} {r.unit[:8]:<8}"
            f" {r.baseline_figure[:46]:<46} {_num(r.baseline_value):>10} {r.ratio:>7.2f}"
        )
        if r.notes:
            print(f"{'':<10}   note: {r.notes}")
    print("\nratio = value / baseline; for latencies and durations lower is better, so a ratio"
          " above 1 means slower than the baseline.")
    if failures:
        print(f"\nbenchmarks that failed to run: {', '.join(failures)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

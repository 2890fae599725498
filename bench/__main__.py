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
    print(f"{'area':<10} {'figure':<58} {'value':>12} {'baseline':<44} {'base value':>12} {'ratio':>7}")
    print("-" * 150)
    for r in rows:
        print(
            f"{r.area:<10} {r.figure[:58]:<58} {r.value:>10.1f} {r.unit[:2]:<2}"
            f" {r.baseline_figure[:44]:<44} {r.baseline_value:>12.1f} {r.ratio:>7.2f}"
        )
        if r.notes:
            print(f"{'':<10}   note: {r.notes}")
    if failures:
        print(f"\nbenchmarks that failed to run: {', '.join(failures)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

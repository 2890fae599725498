"""`make bench`: every benchmark, each against a baseline measured in the same run.

Each `bench/bench_*.py` module exposes `run(ctx: BenchContext) -> list[BenchRow]`. Nothing here
fails on wall-clock time; the table is for people.
"""

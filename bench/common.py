"""Shared benchmark types and helpers."""

from __future__ import annotations

import statistics
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class BenchRow:
    area: str
    figure: str  # what was measured, e.g. "webhook ingest req/s (uvicorn+PG, c=50)"
    value: float
    unit: str
    baseline_figure: str  # e.g. "raw INSERT loop req/s"
    baseline_value: float
    higher_is_better: bool = True
    notes: str = ""

    @property
    def ratio(self) -> float:
        if not self.baseline_value:
            return float("nan")
        return self.value / self.baseline_value


@dataclass
class BenchContext:
    """Resources a benchmark may need; each benchmark starts and stops its own services."""

    workdir: Path
    quick: bool = False  # smaller sizes, for a smoke run
    extra: dict = field(default_factory=dict)


def percentile(samples: list[float], pct: float) -> float:
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    k = max(0, min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1))))
    return ordered[k]


def median(samples: list[float]) -> float:
    return statistics.median(samples) if samples else float("nan")


@contextmanager
def migrated_postgres(name: str) -> Iterator[str]:
    """A throwaway PostgreSQL cluster with one migrated database `name`; yields its URL."""
    import os
    import shutil
    import tempfile

    from noderr_core.migrations import upgrade_database
    from noderr_local.postgres import PostgresCluster

    root = Path(tempfile.mkdtemp(prefix=f"noderr-bench-{name}-pg-"))
    os.chmod(root, 0o755)  # the cluster runs as an unprivileged user
    cluster = PostgresCluster(root)
    try:
        cluster.start()
        cluster.admin_execute(f"CREATE DATABASE {name}")
        upgrade_database(cluster.url(name))
        yield cluster.url(name)
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)

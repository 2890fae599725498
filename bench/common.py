"""Shared benchmark types and helpers."""

from __future__ import annotations

import statistics
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

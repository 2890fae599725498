"""Whether two nodes' outputs agree, and which results form a quorum (pure functions, no I/O).

Agreement is element-wise over the named output tensors: numbers (int or float) agree when they
differ by at most the policy's absolute tolerance; class labels (strings, booleans) and the
structure (tensor names, shapes, dictionary keys such as a ZipMap's class labels) must be equal.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def values_agree(a: Any, b: Any, tolerance: float) -> bool:
    if _is_number(a) and _is_number(b):
        if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
            return True
        return abs(a - b) <= tolerance
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(values_agree(x, y, tolerance) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(values_agree(a[k], b[k], tolerance) for k in a)
    # Labels (str, bool) and None: exact equality, and never a label against a number.
    return type(a) is type(b) and a == b


def outputs_agree(a: dict, b: dict, tolerance: float) -> bool:
    """Two results agree when they name the same outputs and every element agrees."""
    return values_agree(a, b, tolerance)


@dataclass(frozen=True)
class QuorumDecision:
    """The largest group of mutually comparable results around one pivot result."""

    pivot: int | None  # index of the result taken as the canonical answer
    members: tuple[int, ...]  # indexes of the results that agree with the pivot (pivot included)


def identical_outputs(texts: Sequence[str | None], versions: Sequence[object]) -> bool:
    """Whether results are the same JSON text under one model version: then they all agree.

    The common case, checked without parsing: identical text means identical values (JSON has no
    NaN), and a value agrees with itself within any tolerance. `largest_agreeing_group` would
    answer pivot 0 with every result a member.
    """
    return bool(texts) and texts[0] is not None and all(t == texts[0] for t in texts) and all(
        v == versions[0] for v in versions)


def largest_agreeing_group(
    outputs: Sequence[dict], tolerance: float, versions: Sequence[object] | None = None
) -> QuorumDecision:
    """Pick the result most others agree with (earliest wins ties), as BOINC's validators do.

    Agreement with a tolerance is not transitive, so groups are formed around a pivot: a result
    joins when it agrees with the pivot itself. n is small (≤ max_replicas), so n² is fine.
    With `versions` (the model version each result was computed with), results agree only within
    one version: during a canary, two versions' answers never make a quorum together.
    """
    best_pivot: int | None = None
    best_members: tuple[int, ...] = ()
    for i, pivot in enumerate(outputs):
        members = tuple(
            j for j, other in enumerate(outputs)
            if j == i or (
                (versions is None or versions[j] == versions[i])
                and outputs_agree(pivot, other, tolerance)
            )
        )
        if len(members) > len(best_members):
            best_pivot, best_members = i, members
    return QuorumDecision(pivot=best_pivot, members=best_members)

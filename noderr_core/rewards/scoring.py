"""How a node's epoch activity becomes a score, and how a pool is split by score.

Scores are integers so the split is exact and identical on every backend: floating point sums
would depend on row order. The split is the largest-remainder method in integer base units: every
node gets floor(pool * score / total), and the units left over go one each to the largest
remainders (ties: the smaller node id first). The shares always sum to exactly the pool.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

SLOT_SECONDS = 300  # uptime is counted in 5-minute slots with at least one heartbeat
SLOTS_PER_DAY = 86_400 // SLOT_SECONDS


@dataclass(frozen=True)
class ScoringWeights:
    uptime_points_per_slot: int = 10
    points_per_valid_task: int = 5
    # An invalid result costs five valid ones: agreeing with the quorum must pay better than guessing.
    penalty_per_invalid_task: int = 25
    # A missed slot costs half of what a served slot earns: being down is worse than being absent.
    penalty_per_missed_slot: int = 5

    def as_dict(self) -> dict:
        return asdict(self) | {"slot_seconds": SLOT_SECONDS}


DEFAULT_WEIGHTS = ScoringWeights()


@dataclass(frozen=True)
class NodeScore:
    uptime_points: int
    task_points: int
    invalid_penalty: int
    downtime_penalty: int
    score: int


def score_node(
    *, uptime_slots: int, eligible_slots: int, tasks_valid: int, tasks_invalid: int,
    weights: ScoringWeights = DEFAULT_WEIGHTS,
) -> NodeScore:
    missed = max(0, eligible_slots - uptime_slots)
    uptime_points = uptime_slots * weights.uptime_points_per_slot
    task_points = tasks_valid * weights.points_per_valid_task
    invalid_penalty = tasks_invalid * weights.penalty_per_invalid_task
    downtime_penalty = missed * weights.penalty_per_missed_slot
    score = max(0, uptime_points + task_points - invalid_penalty - downtime_penalty)
    return NodeScore(uptime_points, task_points, invalid_penalty, downtime_penalty, score)


def largest_remainder_split(pool: int, weights: Sequence[tuple[str, int]]) -> dict[str, int]:
    """Split `pool` base units by integer weights; keys are unique ids (the tie-breaker).

    Returns an amount for every key. If every weight is zero nobody earns (the pool is not
    distributed); otherwise the amounts sum to exactly `pool`.
    """
    if pool < 0:
        raise ValueError("the pool cannot be negative")
    total = 0
    for key, w in weights:
        if w < 0:
            raise ValueError(f"negative weight for {key}")
        total += w
    if total == 0:
        return {key: 0 for key, _ in weights}
    amounts: dict[str, int] = {}
    remainders: list[tuple[int, str]] = []
    for key, w in weights:
        q, r = divmod(pool * w, total)
        amounts[key] = q
        remainders.append((r, key))
    leftover = pool - sum(amounts.values())
    # Largest remainder first; equal remainders go to the smaller id (deterministic).
    remainders.sort(key=lambda item: (-item[0], item[1]))
    for _, key in remainders[:leftover]:
        amounts[key] += 1
    return amounts

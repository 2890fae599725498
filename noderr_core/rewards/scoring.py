"""How a node's epoch activity becomes a score, and how a pool is split by score.

Scores are integers so the split is exact and identical on every backend: floating point sums
would depend on row order. The split is the largest-remainder method in integer base units: every
node gets floor(pool * score / total), and the units left over go one each to the largest
remainders (ties: the smaller node id first). The shares always sum to exactly the pool.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

SLOT_SECONDS = 300  # service is proven in 5-minute slots
SLOTS_PER_DAY = 86_400 // SLOT_SECONDS

# The scoring policy, named in every epoch document (docs/rewards.md, "Scoring policy"). Change
# the weights or the rules only together with a new version.
SCORING_POLICY_VERSION = "2026-11-v2"


@dataclass(frozen=True)
class ScoringWeights:
    """Policy 2026-11-v2: only proven service earns.

    A *proven slot* is a 5-minute slot in which the node submitted at least one result that was
    judged valid (a challenge task answered correctly, or a result agreeing with the quorum).
    Heartbeats prove nothing: they are reported, never scored. A slot without proof earns nothing,
    which is the whole downtime penalty (no separate missed-slot charge).
    """

    points_per_proven_slot: int = 10
    points_per_valid_task: int = 5
    # An invalid result (a wrong challenge answer or a result outside the quorum) costs five valid
    # ones: guessing must pay worse than serving.
    penalty_per_invalid_task: int = 25
    # An error result costs two valid ones: a node that cannot serve should release the lease.
    penalty_per_error_task: int = 10

    def as_dict(self) -> dict:
        return asdict(self) | {"slot_seconds": SLOT_SECONDS, "policy_version": SCORING_POLICY_VERSION}


DEFAULT_WEIGHTS = ScoringWeights()


@dataclass(frozen=True)
class NodeScore:
    uptime_points: int  # proven slots x points_per_proven_slot
    task_points: int
    invalid_penalty: int
    error_penalty: int
    score: int


def score_node(
    *, proven_slots: int, tasks_valid: int, tasks_invalid: int, tasks_error: int,
    weights: ScoringWeights = DEFAULT_WEIGHTS,
) -> NodeScore:
    """score = 10*proven_slots + 5*valid - 25*invalid - 10*error, floored at 0 (policy v2)."""
    uptime_points = proven_slots * weights.points_per_proven_slot
    task_points = tasks_valid * weights.points_per_valid_task
    invalid_penalty = tasks_invalid * weights.penalty_per_invalid_task
    error_penalty = tasks_error * weights.penalty_per_error_task
    score = max(0, uptime_points + task_points - invalid_penalty - error_penalty)
    return NodeScore(uptime_points, task_points, invalid_penalty, error_penalty, score)


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

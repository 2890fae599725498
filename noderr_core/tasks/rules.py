"""The task network's tunable rules: submission limits, validation defaults, reliability policy."""

from __future__ import annotations

from dataclasses import dataclass

# Client API limits (a request over them is refused with 413, never truncated).
MAX_TASKS_PER_SUBMIT = 1000
MAX_ROWS_PER_TASK = 64
MAX_SUBMIT_BODY_BYTES = 16 * 1024 * 1024
MAX_TASK_IDS_PER_READ = 1000

# Validation policy defaults and bounds (per task, chosen by the client).
DEFAULT_REPLICAS = 2
DEFAULT_QUORUM = 2
DEFAULT_TOLERANCE = 1e-4
MAX_REPLICAS_LIMIT = 10


@dataclass(frozen=True)
class ReliabilityRules:
    """How a node's validation record turns into trust (adaptive replication) and limits.

    BOINC's scheme: after `adaptive_threshold` consecutive valid results a node gets a task
    unreplicated with probability 1 − 1/consecutive_valid (never 1, so spot checks continue). An
    invalid result resets the streak and halves the daily quota; a valid one doubles it back up to
    the base. A node is blocked (no more work, reason shown to admins) after
    `block_after_consecutive_invalid` invalid results in a row or `block_after_consecutive_errors`
    errors in a row, until an admin unblocks it.
    """

    adaptive_threshold: int = 10
    base_daily_quota: int = 1_000_000
    min_daily_quota: int = 16
    block_after_consecutive_invalid: int = 5
    block_after_consecutive_errors: int = 50


DEFAULT_RULES = ReliabilityRules()

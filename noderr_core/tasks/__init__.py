"""The task network: clients submit inference tasks, nodes lease replicas and report results,
results are validated by quorum, and each node's reliability drives adaptive replication.

See docs/tasks.md for the rules. Modules: clients (client keys), submission (client side),
leasing (lease / extend / release / deadlines), results (submission + quorum validation),
comparison (agreement of outputs), reliability (streaks, quotas, blocking), rules (limits).
"""

from noderr_core.tasks.clients import (
    ClientError,
    authenticate_client,
    create_client,
    disable_client,
    issue_client_key,
    list_clients,
    revoke_client_key,
)
from noderr_core.tasks.leasing import (
    extend_leases,
    fail_overdue_tasks,
    lease_tasks,
    release_tasks,
)
from noderr_core.tasks.reliability import (
    node_reliability_summaries,
    node_reliability_summary,
    unblock_node,
)
from noderr_core.tasks.results import submit_results
from noderr_core.tasks.rules import DEFAULT_RULES, ReliabilityRules
from noderr_core.tasks.submission import (
    TaskBatchTooLarge,
    TaskSubmissionError,
    get_tasks,
    submit_tasks,
    task_status_counts,
)

__all__ = [
    "DEFAULT_RULES",
    "ClientError",
    "ReliabilityRules",
    "TaskBatchTooLarge",
    "TaskSubmissionError",
    "authenticate_client",
    "create_client",
    "disable_client",
    "extend_leases",
    "fail_overdue_tasks",
    "get_tasks",
    "issue_client_key",
    "lease_tasks",
    "list_clients",
    "node_reliability_summaries",
    "node_reliability_summary",
    "release_tasks",
    "revoke_client_key",
    "submit_results",
    "submit_tasks",
    "task_status_counts",
    "unblock_node",
]

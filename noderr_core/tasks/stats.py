"""Task statistics over a time window: decided, validated, failed, judged results, queue length."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from noderr_core.tables.tasks import Task, TaskAssignment, TaskStatus


@dataclass
class TaskStats:
    decided: int
    validated: int
    failed: int
    results: int
    valid_results: int
    invalid_results: int
    error_results: int
    queued: int

    @property
    def validation_rate(self) -> float | None:
        return self.validated / self.decided if self.decided else None

    @property
    def result_valid_rate(self) -> float | None:
        judged = self.valid_results + self.invalid_results + self.error_results
        return self.valid_results / judged if judged else None


def task_stats(session: Session, *, since: datetime) -> TaskStats:
    t = session.execute(
        select(func.count(),
               func.sum(case((Task.status == TaskStatus.VALIDATED, 1), else_=0)),
               func.sum(case((Task.status == TaskStatus.FAILED, 1), else_=0)))
        .where(Task.decided_at >= since)
    ).one()
    a = session.execute(
        select(func.count(),
               func.sum(case((TaskAssignment.outcome == "valid", 1), else_=0)),
               func.sum(case((TaskAssignment.outcome == "invalid", 1), else_=0)),
               func.sum(case((TaskAssignment.outcome == "error", 1), else_=0)))
        .where(TaskAssignment.submitted_at >= since)
    ).one()
    queued = session.scalar(select(func.count()).select_from(Task).where(
        Task.status.in_([TaskStatus.QUEUED, TaskStatus.IN_PROGRESS]))) or 0
    return TaskStats(int(t[0] or 0), int(t[1] or 0), int(t[2] or 0), int(a[0] or 0),
                     int(a[1] or 0), int(a[2] or 0), int(a[3] or 0), int(queued))

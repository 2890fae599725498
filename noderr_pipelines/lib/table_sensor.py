"""The cursor design every table-watching sensor shares: a ledger that re-asks after failed runs.

A sensor reads its candidates from the database (through a core read function) and names each by
a deterministic key that changes when the work changes (``screen:<id>:<status_version>``,
``offline:<node>:<last heartbeat>``, ``<outbox id>#<attempts>``). The cursor is the ledger of the
candidates already requested and still present::

    {"requested": {key: [first_requested_at (ISO), requests]}}

Rules:
- a new candidate is requested at once; a candidate in the ledger is not requested again while its
  run may still be working;
- a candidate still present `REREQUEST_AFTER * requests` after its first request (its run failed,
  was cancelled or dropped) is requested again under a new run key (Dagster never launches two runs
  with one run key, so reusing the key would leave it waiting forever); the back-off grows linearly,
  so work that fails for good is retried ever more rarely, never hammered;
- a candidate that left the table (its work is done) leaves the ledger, so the cursor stays as small
  as the queue. It is not an id high-water mark: ids can commit out of order on PostgreSQL.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

REREQUEST_AFTER = timedelta(minutes=10)


@dataclass(frozen=True)
class DueCandidate:
    key: str
    request: int  # 1 = first request; 2, 3, ... = asked again after the previous run did not act

    @property
    def run_key(self) -> str:
        """The candidate's own run key: the key itself at first, a new one each time it is re-asked."""
        return self.key if self.request == 1 else f"{self.key}#request{self.request}"


@dataclass(frozen=True)
class TablePlan:
    due: list[DueCandidate]  # to request on this tick
    waiting: int  # requested earlier, their run may still be working
    cursor: str  # the new ledger (only current candidates)

    @property
    def candidates(self) -> int:
        return len(self.due) + self.waiting

    def batch_run_key(self, prefix: str) -> str:
        """One run for all due candidates: deterministic in the candidates and their request count."""
        material = "\n".join(f"{c.key}#{c.request}" for c in sorted(self.due, key=lambda c: c.key))
        return f"{prefix}:" + hashlib.sha256(material.encode()).hexdigest()[:24]


def load_ledger(raw: str | None) -> dict[str, list]:
    if not raw:
        return {}
    try:
        ledger = json.loads(raw).get("requested", {})
        return {str(k): [str(v[0]), int(v[1])] for k, v in dict(ledger).items()}
    except (ValueError, AttributeError, TypeError, IndexError):
        return {}  # a cursor of an older format: start over (run keys still dedupe first requests)


def plan_requests(
    cursor: str | None,
    candidates: Iterable[str],
    *,
    now: datetime,
    rerequest_after: timedelta = REREQUEST_AFTER,
) -> TablePlan:
    """Which candidates to request now, and the cursor to store (see the module docstring)."""
    previous = load_ledger(cursor)
    ledger: dict[str, list] = {}
    due: list[DueCandidate] = []
    waiting = 0
    for key in dict.fromkeys(candidates):  # keep the caller's order, drop repeats
        if key in previous:
            first_at, requests = previous[key]
            try:
                asked_at = datetime.fromisoformat(first_at)
            except ValueError:
                asked_at = now - rerequest_after * requests
            if now - asked_at < rerequest_after * requests:
                ledger[key] = [first_at, requests]
                waiting += 1
                continue
            ledger[key] = [first_at, requests + 1]
        else:
            ledger[key] = [now.isoformat(), 1]
        due.append(DueCandidate(key, ledger[key][1]))
    return TablePlan(due=due, waiting=waiting,
                     cursor=json.dumps({"requested": ledger}, sort_keys=True))

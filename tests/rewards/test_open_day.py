"""Closing today's epoch early (test networks, the demo) rewards the activity so far."""

from datetime import timedelta

import pytest

from noderr_core.tables import Heartbeat
from noderr_core.rewards.epochs import compute_epoch
from noderr_core.timeutil import utcnow


def test_open_day_is_refused_unless_allowed_and_scores_activity_so_far(session_factory, node_factory):
    node, _ = node_factory()
    now = utcnow()
    with session_factory() as s:
        # Five minutes of heartbeats just now: without the open-day rule the rest of the day would
        # count as downtime and wipe the score out.
        for seconds in range(0, 300, 15):
            s.add(Heartbeat(node_id=node.id, received_at=now - timedelta(seconds=seconds), uptime_seconds=seconds))
        s.commit()
    with session_factory() as s:
        with pytest.raises(ValueError, match="has not ended yet"):
            compute_epoch(s, now.date(), pool=1000)
        s.rollback()
        with pytest.raises(ValueError):
            compute_epoch(s, now.date() + timedelta(days=1), pool=1000, allow_open_day=True)
        s.rollback()
        summary = compute_epoch(s, now.date(), pool=1000, allow_open_day=True)
        s.commit()
    assert summary.node_count == 1
    assert summary.distributed_amount == 1000

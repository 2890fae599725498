"""Closing today's epoch early (test networks, the demo) rewards the proven service so far."""

from datetime import timedelta

import pytest

from noderr_core.rewards.epochs import compute_epoch
from noderr_core.tables import Heartbeat
from noderr_core.timeutil import utcnow
from tests.support.rewards import add_judged_results


def test_open_day_is_refused_unless_allowed_and_scores_proven_service_so_far(session_factory, node_factory):
    node, _ = node_factory()
    idle, _ = node_factory()
    now = utcnow()
    with session_factory() as s:
        # Fifteen minutes of served work just now; the other node only heartbeats.
        for minutes in (1, 6, 11):
            add_judged_results(s, node, now - timedelta(minutes=minutes), valid=1)
        for seconds in range(0, 900, 15):
            s.add(Heartbeat(node_id=idle.id, received_at=now - timedelta(seconds=seconds), uptime_seconds=seconds))
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
    assert summary.node_count == 1 and summary.proven_slots == 3
    assert summary.distributed_amount == 1000
    assert "closed early" in summary.note

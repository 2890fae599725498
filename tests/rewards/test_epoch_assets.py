"""Epochs as Dagster partitions: an early close materializes today's partition, and the blocking
asset checks keep a tampered share table from ever being queued for the chain."""

from __future__ import annotations

from datetime import timedelta

import dagster as dg
from sqlalchemy import func, select, update

from noderr_core.tables import OutboxMessage
from noderr_core.tables.rewards import NodeReward, OperatorReward, RewardEpoch
from noderr_core.timeutil import utcnow
from noderr_pipelines.defs.rewards.assets import reward_epoch, reward_merkle_root, reward_root_publication
from noderr_pipelines.definitions import defs
from noderr_pipelines.resources import DatabaseResource
from tests.support.rewards import add_judged_results, add_served_slots, day_start, make_operator, make_reward_node

ASSETS = [reward_epoch, reward_merkle_root, reward_root_publication]


def _world(session_factory, days):
    with session_factory() as s:
        nodes = [make_reward_node(s, make_operator(s), day_start(days[0]) - timedelta(days=2)) for _ in range(2)]
        for day in days:
            add_served_slots(s, nodes[0], day_start(day) + timedelta(hours=1), 10)
            add_served_slots(s, nodes[1], day_start(day) + timedelta(hours=2), 4)
        s.commit()
    return nodes


def _checks(result) -> dict[tuple[str, str], bool]:
    return {(e.asset_key.to_user_string(), e.check_name): e.passed for e in result.get_asset_check_evaluations()}


def _published(result) -> bool:
    return bool(result.asset_materializations_for_node("reward_root_publication"))


def _outbox_rows(session_factory) -> int:
    with session_factory() as s:
        return s.scalar(select(func.count()).select_from(OutboxMessage))


def test_closing_today_early_materializes_todays_partition(db_url, session_factory):
    now = utcnow()
    with session_factory() as s:
        node = make_reward_node(s, make_operator(s), now - timedelta(days=1))
        add_judged_results(s, node, now - timedelta(minutes=2), valid=1)
        s.commit()
    instance = dg.DagsterInstance.ephemeral()
    job = defs.resolve_job_def("close_epoch_job")
    result = job.execute_in_process(partition_key=now.date().isoformat(), instance=instance,
                                    resources={"database": DatabaseResource(database_url=db_url)})
    assert result.success
    for key in ("reward_epoch", "reward_merkle_root", "reward_root_publication"):
        mats = instance.get_materialized_partitions(dg.AssetKey(key))
        assert mats == {now.date().isoformat()}, key
    assert all(_checks(result).values())
    assert _outbox_rows(session_factory) == 1


def test_checks_block_publication_of_a_tampered_share_table(db_url, session_factory, past_days):
    day = past_days[0]
    _world(session_factory, [day])
    db = {"database": DatabaseResource(database_url=db_url)}
    assert dg.materialize([reward_epoch], partition_key=day.isoformat(), resources=db).success
    # Someone edits a node's share after the epoch was computed.
    with session_factory() as s:
        row = s.scalars(select(NodeReward).order_by(NodeReward.amount.desc())).first()
        s.execute(update(NodeReward).where(NodeReward.id == row.id).values(amount=row.amount + 7))
        s.commit()
    result = dg.materialize([reward_merkle_root, reward_root_publication], partition_key=day.isoformat(),
                            resources=db, raise_on_error=False)
    assert _checks(result)[("reward_merkle_root", "shares_sum_to_pool")] is False
    assert not _published(result) and _outbox_rows(session_factory) == 0


def test_checks_block_a_root_that_lowers_a_published_cumulative_amount(db_url, session_factory, past_days):
    d1, d2, _ = past_days
    _world(session_factory, [d1, d2])
    db = {"database": DatabaseResource(database_url=db_url)}
    first = dg.materialize(ASSETS, partition_key=d1.isoformat(), resources=db)
    assert first.success and _published(first) and _outbox_rows(session_factory) == 1
    assert dg.materialize([reward_epoch], partition_key=d2.isoformat(), resources=db).success
    # The wallet's published (sealed) share and its new one are rewritten down to 1 base unit each.
    with session_factory() as s:
        epoch = s.scalar(select(RewardEpoch).where(RewardEpoch.epoch_date == d1))
        wallet = s.scalars(select(OperatorReward.wallet).where(OperatorReward.epoch_id == epoch.id)
                           .order_by(OperatorReward.amount.desc())).first()
        s.execute(update(OperatorReward).where(OperatorReward.wallet == wallet).values(amount=1))
        s.commit()
    result = dg.materialize([reward_merkle_root, reward_root_publication], partition_key=d2.isoformat(),
                            resources=db, raise_on_error=False)
    checks = _checks(result)
    assert checks[("reward_merkle_root", "cumulative_never_decreases")] is False
    assert not _published(result) and _outbox_rows(session_factory) == 1


def test_an_untampered_epoch_passes_every_check(db_url, session_factory, past_days):
    day = past_days[1]
    _world(session_factory, [day])
    result = dg.materialize(ASSETS, partition_key=day.isoformat(),
                            resources={"database": DatabaseResource(database_url=db_url)})
    assert result.success and _published(result)
    assert _checks(result) == {
        ("reward_epoch", "shares_sum_to_pool"): True,
        ("reward_merkle_root", "root_matches_leaves"): True,
        ("reward_merkle_root", "cumulative_never_decreases"): True,
        ("reward_merkle_root", "shares_sum_to_pool"): True,
    }

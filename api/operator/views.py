"""Reads for the operator's pages: only this operator's nodes, each query bounded by them.

Page composition lives here, with its only consumer (the operator routes); the rules it shows
(statuses, rewards, alerts) are the core's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, time

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from api.admin.views.series import SeriesPoint, TimeSeries
from noderr_core.operators.actions import open_node_request
from noderr_core.tables import Heartbeat, Node, Operator, OperatorApplication
from noderr_core.tables.network import Alert
from noderr_core.tables.rewards import NodeReward, RewardEpoch

MAX_EPOCHS = 60
TOKEN_DECIMALS = 18


@dataclass
class OperatorNode:
    node: Node
    latest: Heartbeat | None
    open_alerts: list[Alert]

    @property
    def model_versions(self) -> dict:
        return dict(self.latest.model_versions or {}) if self.latest else {}


@dataclass
class EpochEarning:
    epoch_date: object
    epoch_status: str
    amount: int
    rows: list[NodeReward] = field(default_factory=list)


@dataclass
class OperatorOverview:
    operator: Operator
    nodes: list[OperatorNode]
    earnings: list[EpochEarning]  # newest first
    open_request: OperatorApplication | None
    requests: list[OperatorApplication]

    @property
    def total_earned(self) -> int:
        return sum(e.amount for e in self.earnings)

    @property
    def earned_by_node(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for epoch in self.earnings:
            for row in epoch.rows:
                out[row.node_id] = out.get(row.node_id, 0) + row.amount
        return out

    @property
    def open_alerts(self) -> list[tuple[Node, Alert]]:
        return [(n.node, a) for n in self.nodes for a in n.open_alerts]


def _latest_heartbeats(session: Session, node_ids: list[str]) -> dict[str, Heartbeat]:
    if not node_ids:
        return {}
    latest = (select(Heartbeat.node_id, func.max(Heartbeat.received_at).label("at"))
              .where(Heartbeat.node_id.in_(node_ids)).group_by(Heartbeat.node_id).subquery())
    rows = session.scalars(select(Heartbeat).join(
        latest, and_(Heartbeat.node_id == latest.c.node_id, Heartbeat.received_at == latest.c.at)))
    return {h.node_id: h for h in rows}


def _open_alerts(session: Session, node_ids: list[str]) -> dict[str, list[Alert]]:
    out: dict[str, list[Alert]] = {}
    if node_ids:
        for alert in session.scalars(select(Alert).where(Alert.node_id.in_(node_ids),
                                                         Alert.closed_at.is_(None))
                                     .order_by(Alert.opened_at.desc())):
            out.setdefault(alert.node_id, []).append(alert)
    return out


def _earnings(session: Session, node_ids: list[str]) -> list[EpochEarning]:
    if not node_ids:
        return []
    rows = session.execute(
        select(RewardEpoch, NodeReward).join(NodeReward, NodeReward.epoch_id == RewardEpoch.id)
        .where(NodeReward.node_id.in_(node_ids))
        .order_by(RewardEpoch.epoch_date.desc(), NodeReward.node_id)
        .limit(MAX_EPOCHS * max(1, len(node_ids)))
    ).all()
    by_epoch: dict[int, EpochEarning] = {}
    for epoch, reward in rows:
        entry = by_epoch.setdefault(epoch.id, EpochEarning(epoch.epoch_date, epoch.status, 0))
        entry.amount += reward.amount
        entry.rows.append(reward)
    return sorted(by_epoch.values(), key=lambda e: e.epoch_date, reverse=True)[:MAX_EPOCHS]


def earnings_series(earnings: list[EpochEarning], name: str = "earned") -> TimeSeries:
    """Earnings per epoch (oldest → newest) in whole tokens, for the admin's line chart."""
    points = [SeriesPoint(datetime.combine(e.epoch_date, time(0), tzinfo=UTC),
                          e.amount / 10**TOKEN_DECIMALS) for e in reversed(earnings)]
    return TimeSeries(name=name, points=points, unit="NDR")


def operator_overview(session: Session, operator: Operator) -> OperatorOverview:
    nodes = list(session.scalars(select(Node).where(Node.operator_id == operator.id)
                                 .order_by(Node.created_at, Node.id)))
    ids = [n.id for n in nodes]
    latest = _latest_heartbeats(session, ids)
    alerts = _open_alerts(session, ids)
    requests = list(session.scalars(
        select(OperatorApplication).where(OperatorApplication.operator_id == operator.id)
        .order_by(OperatorApplication.id.desc()).limit(20)))
    return OperatorOverview(
        operator=operator,
        nodes=[OperatorNode(n, latest.get(n.id), alerts.get(n.id, [])) for n in nodes],
        earnings=_earnings(session, ids),
        open_request=open_node_request(session, operator),
        requests=requests,
    )


def operator_node(session: Session, operator: Operator, node_id: str) -> tuple[OperatorNode, list[EpochEarning]] | None:
    node = session.get(Node, node_id)
    if node is None or node.operator_id != operator.id:
        return None
    view = OperatorNode(node, _latest_heartbeats(session, [node.id]).get(node.id),
                        _open_alerts(session, [node.id]).get(node.id, []))
    return view, _earnings(session, [node.id])

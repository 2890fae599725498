"""Node health at 10,000 nodes: a fleet-wide event (every node silent, then every node back) through
`apply_node_health`, against raw SQL on the same PostgreSQL in the same run.

Setting: 10,000 online nodes (100 per operator, so 100 operators) silent for an hour, 100 more
still reporting (so this is nodes failing, not the control plane: see
`noderr_core.network.assess_control_plane`), two admins in NODERR_ADMIN_ALERT_EMAILS.

What each side does:
- ours (`apply_node_health`, the health job's whole work): conditional UPDATE … RETURNING of the
  nodes still stale; INSERT … SELECT of their alerts (details: last heartbeat, threshold, reason);
  INSERT … SELECT of one audit row per node (`node.offline`: reason, last heartbeat, alert id);
  one digest per recipient (count, the first nodes, a link; subject rendered) through the outbox.
  Recovery: one UPDATE of the alerts (closed_at, close reason, recovery heartbeat), INSERT … SELECT
  of one `alert.closed` audit row per alert, one recovery digest per recipient.
- raw SQL, essential (the headline baseline): UPDATE … RETURNING of the stale nodes, INSERT …
  SELECT of their alerts (empty details), one outbox row per recipient (empty payload, no
  rendering). Recovery: UPDATE … FROM nodes … RETURNING of the alerts, one outbox row per recipient.
  No audit trail.
- raw SQL + audit (for reference): the essential part plus the same one audit row per node (alert).

E-mails per recipient are counted through the Dagster sensor and job (in process) for the same event.
The machine is shared; rates are what it gives at the time, the ratios are the comparable part.
"""

from __future__ import annotations

import time

from bench.common import BenchContext, BenchRow, median, migrated_postgres

NODES = 10_000
FRESH_NODES = 100  # still reporting while NODES go silent
PER_OPERATOR = 100
ADMINS = "ops1@example.com,ops2@example.com"
THRESHOLD = 120


def _seed(db_url: str, n: int) -> None:
    import secrets

    from sqlalchemy import insert

    from noderr_core.db import make_engine
    from noderr_core.tables import Node, Operator
    from noderr_core.timeutil import utcnow

    engine = make_engine(db_url)
    now = utcnow()
    ops = [{"id": o + 1, "email": f"bench-op{o}@example.com", "full_name": f"Op {o}",
            "wallet_address": f"0x{o:040x}", "created_at": now} for o in range((n + PER_OPERATOR - 1) // PER_OPERATOR)]
    nodes = [{"id": f"node_{i:016x}", "operator_id": i // PER_OPERATOR + 1, "status": "online",
              "api_key_id": secrets.token_hex(8), "api_key_hash": "0" * 64, "api_key_version": 1,
              "api_key_rotated_at": now, "created_at": now, "last_heartbeat_at": now} for i in range(n)]
    with engine.begin() as c:
        c.execute(insert(Operator.__table__), ops)
        for i in range(0, n, 2000):
            c.execute(insert(Node.__table__), nodes[i:i + 2000])
    engine.dispose()


def _reset(engine) -> None:
    from sqlalchemy import text

    with engine.begin() as c:
        c.execute(text("DELETE FROM outbox; DELETE FROM alerts; DELETE FROM audit_log; DELETE FROM heartbeats"))
        c.execute(text("UPDATE nodes SET status = 'online', status_reason = NULL, last_heartbeat_at = "
                       "CASE WHEN id < :edge THEN now() - interval '1 hour' ELSE now() END"),
                  {"edge": f"node_{NODES:016x}"})
        # The fresh nodes' heartbeats keep the stream continuous (no control-plane gap).
        c.execute(text("INSERT INTO heartbeats (node_id, received_at, uptime_seconds, model_versions, "
                       "inference_count, tasks_done, errors) SELECT id, now() - (g * interval '20 seconds'), 1, "
                       "'{}', 0, 0, 0 FROM nodes, generate_series(0, 200) g WHERE id >= :edge"),
                  {"edge": f"node_{NODES:016x}"})
    with engine.connect() as c:
        c.execute(text("ANALYZE"))


def _back(engine) -> None:
    """Every node reports again (the recovery event)."""
    from sqlalchemy import text

    with engine.begin() as c:
        c.execute(text("UPDATE nodes SET status = 'online', last_heartbeat_at = now()"))


def _ours(factory, settings) -> tuple[float, float, int, int]:
    from noderr_core.audit import Actor
    from noderr_core.network import apply_node_health
    from noderr_core.timeutil import utcnow

    started = time.perf_counter()
    with factory() as s:
        report = apply_node_health(s, node_ids=None, alert_ids=[], offline_after_seconds=THRESHOLD,
                                   settings=settings, actor=Actor.system("bench"), now=utcnow())
        s.commit()
    offline = time.perf_counter() - started
    assert len(report.marked_offline) == NODES, len(report.marked_offline)
    _back(factory.kw["bind"])
    started = time.perf_counter()
    with factory() as s:
        back = apply_node_health(s, node_ids=[], alert_ids=None, offline_after_seconds=THRESHOLD,
                                 settings=settings, actor=Actor.system("bench"), now=utcnow())
        s.commit()
    recovery = time.perf_counter() - started
    assert len(back.alerts_closed) == NODES, len(back.alerts_closed)
    return offline, recovery, report.emails_queued, back.emails_queued


def _raw(dsn: str, with_audit: bool) -> tuple[float, float]:
    import psycopg2

    def outbox(cur, recipients, event):
        for who in recipients:
            cur.execute("INSERT INTO outbox (kind, payload, status, attempts, max_attempts, idempotency_key, "
                        "created_at, next_attempt_at) VALUES ('email', '{}', 'pending', 0, 12, %s, now(), now())",
                        (f"raw:{event}:{who}",))

    started = time.perf_counter()
    with psycopg2.connect(dsn) as c, c.cursor() as cur:
        cur.execute("UPDATE nodes SET status = 'offline', status_reason = 'silent' WHERE status = 'online' "
                    "AND last_heartbeat_at < now() - interval '120 seconds' RETURNING id, operator_id")
        rows = cur.fetchall()
        ids = [r[0] for r in rows]
        cur.execute("INSERT INTO alerts (kind, node_id, opened_at, details) SELECT 'node_offline', id, now(), "
                    "'{}' FROM nodes WHERE id = ANY(%s)", (ids,))
        if with_audit:
            cur.execute("INSERT INTO audit_log (at, actor_type, action, subject_type, subject_id, details) "
                        "SELECT now(), 'system', 'node.offline', 'node', id, '{}' FROM nodes WHERE id = ANY(%s)",
                        (ids,))
        outbox(cur, sorted({r[1] for r in rows}) + ADMINS.split(","), "offline")
    offline = time.perf_counter() - started
    with psycopg2.connect(dsn) as c, c.cursor() as cur:
        cur.execute("UPDATE nodes SET status = 'online', last_heartbeat_at = now()")
    started = time.perf_counter()
    with psycopg2.connect(dsn) as c, c.cursor() as cur:
        cur.execute("UPDATE alerts a SET closed_at = now() FROM nodes n WHERE a.closed_at IS NULL AND "
                    "n.id = a.node_id AND n.status = 'online' AND n.last_heartbeat_at > a.opened_at "
                    "RETURNING a.id, n.operator_id")
        rows = cur.fetchall()
        if with_audit:
            cur.execute("INSERT INTO audit_log (at, actor_type, action, subject_type, subject_id, details) "
                        "SELECT now(), 'system', 'alert.closed', 'alert', id::text, '{}' FROM alerts "
                        "WHERE id = ANY(%s)", ([r[0] for r in rows],))
        outbox(cur, sorted({r[1] for r in rows}) + ADMINS.split(","), "recovered")
    recovery = time.perf_counter() - started
    return offline, recovery


def _emails_per_recipient(db_url: str, factory) -> tuple[int, int, int]:
    """The event through the sensor and the job: (max e-mails to one person for the offline event,
    for the recovery, total e-mails)."""
    import dagster as dg
    from sqlalchemy import func, select

    from noderr_core.tables import OutboxMessage
    from noderr_pipelines.defs.network.jobs import node_health_job
    from noderr_pipelines.defs.network.resources import NodeHealthPolicy
    from noderr_pipelines.defs.network.sensors import node_health_sensor
    from noderr_pipelines.resources import DatabaseResource

    resources = {"database": DatabaseResource(database_url=db_url),
                 "node_health": NodeHealthPolicy(offline_after_seconds=THRESHOLD)}

    def event() -> tuple[int, int]:
        tick = node_health_sensor(dg.build_sensor_context(resources=resources))
        for request in tick.run_requests:
            assert node_health_job.execute_in_process(run_config=request.run_config, resources=resources).success
        with factory() as s:
            per = s.execute(select(func.count()).select_from(OutboxMessage).group_by(
                OutboxMessage.payload["to"].as_string())).scalars().all()
            s.execute(OutboxMessage.__table__.delete())
            s.commit()
        return max(per, default=0), sum(per)

    offline, total_offline = event()
    _back(factory.kw["bind"])
    recovery, total_recovery = event()
    return offline, recovery, total_offline + total_recovery


def run(ctx: BenchContext) -> list[BenchRow]:
    import os

    from noderr_core.db import make_engine, make_session_factory
    from noderr_core.settings import Settings

    rounds = 1 if ctx.quick else 3
    with migrated_postgres("bench_health") as db_url:
        dsn = db_url.replace("postgresql+psycopg2://", "postgresql://")
        _seed(db_url, NODES + FRESH_NODES)
        engine = make_engine(db_url)
        factory = make_session_factory(engine)
        os.environ["NODERR_ADMIN_ALERT_EMAILS"] = ADMINS  # for the job's own settings
        settings = Settings(env="test", database_url=db_url, admin_alert_emails=ADMINS)
        ours, raw, raw_audit = [], [], []
        for _ in range(rounds):  # interleaved: every side sees the same machine load
            _reset(engine)
            ours.append(_ours(factory, settings))
            _reset(engine)
            raw.append(_raw(dsn, with_audit=False))
            _reset(engine)
            raw_audit.append(_raw(dsn, with_audit=True))
            print(f"   offline/recovery s: ours {ours[-1][0]:.2f}/{ours[-1][1]:.2f}, raw {raw[-1][0]:.2f}/"
                  f"{raw[-1][1]:.2f}, raw+audit {raw_audit[-1][0]:.2f}/{raw_audit[-1][1]:.2f}; "
                  f"e-mails {ours[-1][2]}/{ours[-1][3]}", flush=True)
        _reset(engine)
        per_offline, per_recovery, total = _emails_per_recipient(db_url, factory)
        print(f"   sensor+job: at most {per_offline} e-mail(s) per person for the offline event, "
              f"{per_recovery} for the recovery; {total} in all", flush=True)
        engine.dispose()
    off, rec = median([o[0] for o in ours]), median([o[1] for o in ours])
    raw_off, raw_rec = median([r[0] for r in raw]), median([r[1] for r in raw])
    raw_audit_off = median([r[0] for r in raw_audit])
    raw_audit_rec = median([r[1] for r in raw_audit])
    return [
        BenchRow("health", f"node health: {NODES} nodes offline per s (one job run)", NODES / off, "nodes/s",
                 "raw SQL: UPDATE…RETURNING, INSERT…SELECT alerts, 1 outbox row/recipient", NODES / raw_off, True,
                 f"{off:.2f}s vs {raw_off:.2f}s (raw + per-node audit rows: {raw_audit_off:.2f}s, ratio "
                 f"{raw_audit_off / off:.2f}); ours also writes one audit row per node and renders "
                 f"{ours[-1][2]} digests; sensor+job: ≤ {per_offline} e-mail per person"),
        BenchRow("health", f"node health: {NODES} alerts closed per s on recovery", NODES / rec, "alerts/s",
                 "raw SQL: UPDATE alerts…FROM nodes…RETURNING, 1 outbox row/recipient", NODES / raw_rec, True,
                 f"{rec:.2f}s vs {raw_rec:.2f}s (raw + per-alert audit rows: {raw_audit_rec:.2f}s); "
                 f"sensor+job: ≤ {per_recovery} e-mail per person; {total} e-mails for both events"),
    ]


if __name__ == "__main__":  # python -m bench.bench_health [--quick]
    import sys

    from bench.__main__ import main

    sys.argv = [sys.argv[0], *sys.argv[1:], "bench_health"]
    raise SystemExit(main())

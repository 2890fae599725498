"""Challenge tasks: spot checks with known answers that prove a node serves (policy 2026-11-v2).

A challenge is an ordinary row in `tasks` with two extra columns: `target_node_id` (only that node
may lease it; the lease query filters on it) and `challenge_expected` (the known answer, never
sent). In the lease document it looks exactly like a client task of the same model: same id format,
model name, inputs shaped like the model's real inputs (a recent client input of the model,
jittered, or random rows in the declared shape), lease deadline. `replicas = quorum = 1`.

- `create_challenges` (the Dagster `challenge_job` runs it every 5-minute slot) gives every online
  node (heartbeat within ONLINE_WITHIN, not suspended or removed) without an open challenge one new
  challenge on a served model. The known answer is computed *at creation* with onnxruntime on the
  published model bytes (sha256 checked) for every served version of that model (active and
  canary), so a node is judged against the version it reports running.
- `judge_challenge` (pure; called from exactly one place, `results._evaluate`) compares the
  node's outputs with the known answer through `comparison.outputs_agree` (tolerance
  CHALLENGE_TOLERANCE): outcome 'valid' or 'invalid' on the assignment (issue14b's slashing
  monitor counts 'invalid' as evidence). An error result is 'error' as for any task.
A valid answer proves service for its 5-minute slot (rewards.epochs); a wrong one is penalised as
an invalid result.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from noderr_core.tables import Node
from noderr_core.tables.onboarding import NodeStatus
from noderr_core.tables.model_registry import ModelVersion, ModelVersionStatus
from noderr_core.tables.tasks import Client, ResultOutcome, Task, TaskStatus
from noderr_core.tasks.comparison import outputs_agree
from noderr_core.tasks.submission import new_task_id
from noderr_core.timeutil import utcnow

CHALLENGE_CLIENT = "noderr-challenges"
# Leased before client work (priority is not part of the lease document).
CHALLENGE_PRIORITY = 1000
# float32 inference on different CPUs / thread counts differs far below this.
CHALLENGE_TOLERANCE = 1e-4
CHALLENGE_TTL = timedelta(minutes=15)
ONLINE_WITHIN = timedelta(minutes=10)
VALIDATED_BY = "challenge"

_NUMPY = {"float32": "float32", "float64": "float64", "int64": "int64", "int32": "int32", "bool": "bool"}


def challenge_outcome(expected: dict, outputs: dict | None, model_version: int | None,
                      tolerance: float = CHALLENGE_TOLERANCE) -> str:
    """'valid' when the outputs agree with the known answer of the version the node ran (or, for a
    version unknown at creation, with any served version's answer), else 'invalid'."""
    answers: dict[str, Any] = (expected or {}).get("answers") or {}
    if outputs is None or not answers:
        return ResultOutcome.INVALID.value
    key = str(model_version) if model_version is not None else None
    candidates = [answers[key]] if key in answers else list(answers.values())
    agree = any(outputs_agree(answer, outputs, tolerance) for answer in candidates)
    return ResultOutcome.VALID.value if agree else ResultOutcome.INVALID.value


def judge_challenge(task: dict[str, Any], row: dict[str, Any], now: datetime) -> tuple[str, dict[str, Any]]:
    """The outcome of a challenge's (only) result and the task's decided columns."""
    outcome = challenge_outcome(task["challenge_expected"], row.get("result"), row.get("model_version"),
                                task["tolerance"])
    if outcome == ResultOutcome.VALID.value:
        return outcome, {"status": TaskStatus.VALIDATED.value, "result": row.get("result"),
                         "agreeing_node_ids": [row["node_id"]], "validated_by": VALIDATED_BY,
                         "decided_at": now, "leasable_at": None}
    return outcome, {"status": TaskStatus.FAILED.value, "decided_at": now, "leasable_at": None,
                     "fail_reason": "challenge answered wrongly: the outputs differ from the known answer"}


# --- creation -----------------------------------------------------------------------------------

@dataclass
class ChallengeReport:
    created: int = 0
    nodes_online: int = 0
    nodes_with_open_challenge: int = 0
    models: dict[str, list[int]] = field(default_factory=dict)  # name -> versions answered
    skipped: dict[str, str] = field(default_factory=dict)  # model -> why no challenge

    def as_metadata(self) -> dict:
        return {"created": self.created, "nodes_online": self.nodes_online,
                "nodes_with_open_challenge": self.nodes_with_open_challenge,
                "models": ", ".join(f"{n} v{v}" for n, v in sorted(self.models.items())) or "none",
                "skipped": "; ".join(f"{m}: {why}" for m, why in sorted(self.skipped.items())) or ""}


ModelLoader = Callable[[ModelVersion], bytes]


def challenge_client_id(session: Session) -> int:
    client_id = session.scalar(select(Client.id).where(Client.name == CHALLENGE_CLIENT))
    if client_id is None:
        client = Client(name=CHALLENGE_CLIENT, created_by="system")
        session.add(client)
        session.flush()
        client_id = client.id
    return client_id


def nodes_due(session: Session, now: datetime) -> tuple[list[str], int]:
    """Online nodes without an undecided challenge, and how many online nodes have one."""
    online = list(session.scalars(
        select(Node.id).where(Node.last_heartbeat_at >= now - ONLINE_WITHIN,
                              Node.status.not_in((NodeStatus.SUSPENDED.value, NodeStatus.REMOVED.value)))
        .order_by(Node.id)
    ))
    busy = set(session.scalars(
        select(Task.target_node_id).where(
            Task.target_node_id.in_(online),
            Task.status.in_((TaskStatus.QUEUED.value, TaskStatus.IN_PROGRESS.value)),
            Task.deadline_at > now,
        )
    )) if online else set()
    return [n for n in online if n not in busy], len(busy)


def _sample_inputs(session: Session, model: str, specs: list[dict], rng: random.Random) -> dict[str, list]:
    """Rows shaped like the model's real inputs: a recent client input, jittered, or random rows."""
    recent = session.scalars(
        select(Task.inputs).where(Task.model_name == model, Task.challenge_expected.is_(None))
        .order_by(Task.created_at.desc()).limit(20)
    ).all()
    base = rng.choice(recent) if recent else None
    out: dict[str, list] = {}
    for spec in specs:
        name, dtype, shape = spec["name"], spec.get("dtype", "float32"), spec.get("shape") or [None]
        rows = base.get(name) if isinstance(base, dict) else None
        if isinstance(rows, list) and rows:
            out[name] = _jitter(rows[:1], dtype, rng)
        else:
            row_shape = [d if isinstance(d, int) and d > 0 else 1 for d in shape[1:]]
            out[name] = [_random_row(row_shape, dtype, rng)]
    return out


def _jitter(value: Any, dtype: str, rng: random.Random) -> Any:
    if isinstance(value, list):
        return [_jitter(v, dtype, rng) for v in value]
    if dtype.startswith("float") and isinstance(value, (int, float)) and not isinstance(value, bool):
        return round(float(value) * rng.uniform(0.9, 1.1) + rng.uniform(-0.05, 0.05), 4)
    return value


def _random_row(shape: list[int], dtype: str, rng: random.Random) -> Any:
    if not shape:
        if dtype.startswith("float"):
            return round(rng.uniform(0, 8), 4)
        if dtype == "bool":
            return rng.random() < 0.5
        return rng.randrange(0, 10)
    return [_random_row(shape[1:], dtype, rng) for _ in range(shape[0])]


def _encode(value: Any) -> Any:
    """JSON-ready outputs exactly as the node encodes them (node_service.signature.encode_output)."""
    import numpy as np

    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def answer_rows(onnx_bytes: bytes, specs: list[dict], inputs_list: list[dict[str, list]]) -> list[dict]:
    """Known answers for many one-row challenges in one onnxruntime run (split per challenge)."""
    import numpy as np

    from noderr_core.modelstore.checks import inference_session

    session = inference_session(onnx_bytes)
    names = [o.name for o in session.get_outputs()]
    feeds = {
        spec["name"]: np.asarray([row for inputs in inputs_list for row in inputs[spec["name"]]],
                                 dtype=_NUMPY.get(spec.get("dtype", "float32"), "float32"))
        for spec in specs
    }
    values = session.run(names, feeds)
    return [{name: _encode(value[i:i + 1]) for name, value in zip(names, values, strict=True)}
            for i in range(len(inputs_list))]


def s3_model_loader(client) -> ModelLoader:
    """Reads a published version's bytes from the model bucket and checks them against its sha256."""
    from noderr_core.modelstore.objects import read_model_source

    def load(row: ModelVersion) -> bytes:
        data = read_model_source(f"s3://{row.bucket}/{row.object_key}", client)
        if hashlib.sha256(data).hexdigest() != row.sha256:
            raise ValueError(f"{row.name} v{row.version}: stored bytes do not match the published sha256")
        return data

    return load


def create_challenges(session: Session, *, load_model: ModelLoader, now: datetime | None = None,
                      rng: random.Random | None = None, limit: int = 10_000) -> ChallengeReport:
    """One challenge per due online node (at most `limit`), on a served model; the caller commits."""
    now = now or utcnow()
    rng = rng or random.Random()
    report = ChallengeReport()
    due, report.nodes_with_open_challenge = nodes_due(session, now)
    report.nodes_online = len(due) + report.nodes_with_open_challenge
    due = due[:limit]
    served = session.scalars(
        select(ModelVersion).where(ModelVersion.status.in_(
            (ModelVersionStatus.ACTIVE.value, ModelVersionStatus.CANARY.value)))
        .order_by(ModelVersion.name, ModelVersion.version)
    ).all()
    by_model: dict[str, list[ModelVersion]] = {}
    for row in served:
        by_model.setdefault(row.name, []).append(row)
    if not due or not by_model:
        return report
    names = sorted(by_model)
    # Each node gets one model, rotating by slot so a multi-model node is checked on all of them.
    slot = int(now.timestamp()) // 300
    plan: dict[str, list[str]] = {}
    for i, node_id in enumerate(due):
        plan.setdefault(names[(i + slot) % len(names)], []).append(node_id)
    client_id = challenge_client_id(session)
    rows: list[dict] = []
    for model, node_ids in sorted(plan.items()):
        versions = by_model[model]
        specs = next((v.manifest.get("inputs") for v in versions if v.status == "active"), None) \
            or versions[-1].manifest.get("inputs") or []
        inputs_list = [_sample_inputs(session, model, specs, rng) for _ in node_ids]
        answers: dict[str, list[dict]] = {}
        for version in versions:
            try:
                answers[str(version.version)] = answer_rows(load_model(version), specs, inputs_list)
            except Exception as exc:  # an unreadable version is reported, the others still answer
                report.skipped[f"{model} v{version.version}"] = str(exc)[:300]
        if not answers:
            continue
        report.models[model] = [int(v) for v in answers]
        for i, node_id in enumerate(node_ids):
            rows.append({
                "id": new_task_id(), "client_id": client_id, "model_name": model,
                "inputs": inputs_list[i], "priority": CHALLENGE_PRIORITY,
                "deadline_at": now + CHALLENGE_TTL, "replicas": 1, "quorum": 1,
                "tolerance": CHALLENGE_TOLERANCE, "max_replicas": 1, "adaptive": False,
                "replicas_needed": 1, "leasable_at": now, "status": TaskStatus.QUEUED.value,
                "created_at": now, "target_node_id": node_id,
                "challenge_expected": {"answers": {v: a[i] for v, a in answers.items()}},
            })
    if rows:
        session.execute(insert(Task), rows)
    report.created = len(rows)
    return report


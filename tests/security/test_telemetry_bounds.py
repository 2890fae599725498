"""Node telemetry is bounded in the protocol, and admin pages render a bounded amount per node
(finding 6): a heartbeat listing 50,000 models used to make /admin/models 18 MB."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from noderr_core.tables import Heartbeat
from noderr_protocol.base import MAX_MODELS_PER_NODE
from noderr_protocol.work import HeartbeatIn, LeaseRequest, ResultBatch
from tests.support.factories import make_node


@pytest.mark.parametrize("model,document", [
    (HeartbeatIn, {"uptime_seconds": 1, "model_versions": {f"m{i}": 1 for i in range(MAX_MODELS_PER_NODE + 1)}}),
    (HeartbeatIn, {"uptime_seconds": 1, "model_versions": {"x" * 5000: 1}}),
    (HeartbeatIn, {"uptime_seconds": 1, "agent_version": "v" * 33}),
    (LeaseRequest, {"models": [{"name": f"m{i}", "version": 1} for i in range(MAX_MODELS_PER_NODE + 1)]}),
    (LeaseRequest, {"models": [{"name": "Not A Model Name", "version": 1}]}),
    (ResultBatch, {"results": [{"task_id": "t" * 41, "model_version": 1}]}),
    (ResultBatch, {"results": [{"task_id": "t_1", "model_version": 1,
                                "outputs": {f"o{i}": [[1]] for i in range(33)}}]}),
])
def test_protocol_documents_bound_every_list_and_string(model, document):
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        model.model_validate(document)


def test_an_oversized_heartbeat_is_a_422_not_stored(admin_app, admin_db):
    with admin_db() as s:
        _node, key = make_node(s)
        s.commit()
    with TestClient(admin_app) as http:
        r = http.post("/v1/nodes/heartbeat", headers={"authorization": f"Bearer {key}"},
                      json={"uptime_seconds": 1, "model_versions": {f"m{i}": 1 for i in range(5000)}})
    assert r.status_code == 422 and "at most 64 items" in r.text


def test_admin_pages_stay_small_with_huge_stored_telemetry(admin_client, admin_db):
    """Telemetry stored before the bound (or by any other path) still cannot blow up a page."""
    with admin_db() as s:
        node, _key = make_node(s)
        s.add(Heartbeat(node_id=node.id, uptime_seconds=5,
                        model_versions={f"model-{i:05d}": i for i in range(50_000)}))
        s.commit()
        node_id = node.id
    html = {"accept": "text/html"}
    for path in ("/admin", "/admin/models", f"/admin/nodes/{node_id}"):
        page = admin_client.get(path, headers=html)
        assert page.status_code == 200, path
        assert len(page.content) < 200_000, (path, len(page.content))
    detail = admin_client.get(f"/admin/nodes/{node_id}", headers=html).text
    assert "+49950 more" in detail

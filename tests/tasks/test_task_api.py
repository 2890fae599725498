"""The task API end to end through uvicorn: clients submit and read, nodes lease and report."""

from __future__ import annotations

import time

from noderr_core.audit import Actor
from noderr_core.tasks import create_client, revoke_client_key

ROW = [5.1, 3.5, 1.4, 0.2]


def test_client_and_node_journey_through_the_api(db_url, session_factory, task_world, api_server_factory):
    node_a, key_a = task_world.node()
    node_b, key_b = task_world.node()
    with session_factory() as s:
        _other, other_key = create_client(s, name="other corp", actor=Actor.system("test"))
        s.commit()
    # Authenticated keys are cached per API worker; 1 s here so the revocation below is quick.
    server = api_server_factory(db_url, env={"NODERR_AUTH_CACHE_SECONDS": "1"})
    client_h = {"Authorization": f"Bearer {task_world.client_key}"}
    with server.client() as http:
        # Authentication.
        assert http.post("/v1/tasks", json={"tasks": []}).status_code == 401
        r = http.post("/v1/tasks", json={}, headers={"Authorization": "Bearer ck_bogus"})
        assert r.status_code == 401 and "client API key" in r.json()["detail"]
        # A node key is not a client key.
        assert http.post("/v1/tasks", json={}, headers={"Authorization": f"Bearer {key_a}"}).status_code == 401

        # Bad input: precise 4xx, nothing stored.
        r = http.post("/v1/tasks", headers=client_h, json={"tasks": [
            {"model": "iris", "inputs": {"input": [ROW]}},
            {"model": "resnet", "inputs": {"input": [ROW]}},
        ]})
        assert r.status_code == 422
        [err] = r.json()["detail"]
        assert err["loc"] == ["body", "tasks", 1, "model"] and "unknown model 'resnet'" in err["msg"]
        assert "iris" in err["msg"]  # tells the client what exists

        r = http.post("/v1/tasks", headers=client_h, json={"tasks": [
            {"model": "iris", "inputs": {"input": [[1.0, 2.0, 3.0, 4.0], [1.0, 2.0]]}}]})
        assert r.status_code == 422 and "ragged" in r.text

        r = http.post("/v1/tasks", headers=client_h, json={"tasks": [
            {"model": "iris", "inputs": {"input": [[1.0, 2.0, 3.0]]}}]})
        assert r.status_code == 422 and "shape [4]" in r.text

        r = http.post("/v1/tasks", headers=client_h, json={"tasks": [
            {"model": "iris", "inputs": {"input": [ROW]}, "policy": {"replicas": 2, "quorum": 3}}]})
        assert r.status_code == 422 and "quorum (3) cannot exceed replicas (2)" in r.text

        r = http.post("/v1/tasks", headers=client_h, json={"tasks": [
            {"model": "iris", "inputs": {"input": [ROW]}, "colour": "red"}]})
        assert r.status_code == 422 and "colour" in r.text

        r = http.post("/v1/tasks", headers={**client_h, "Content-Type": "application/json"}, content=b"{not json")
        assert r.status_code == 422 and r.json()["detail"][0]["type"] == "json_invalid"
        r = http.post("/v1/tasks", headers=client_h, content=b'{"tasks": []}')  # no JSON content type
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body"]

        too_many = {"tasks": [{"model": "iris", "inputs": {"input": [ROW]}}] * 1001}
        r = http.post("/v1/tasks", headers=client_h, json=too_many)
        assert r.status_code == 413 and "at most 1000 tasks" in r.json()["detail"]

        huge = b'{"tasks": [' + b" " * (17 * 1024 * 1024) + b"]}"
        r = http.post("/v1/tasks", headers={**client_h, "Content-Type": "application/json"}, content=huge)
        assert r.status_code == 413 and "split the batch" in r.json()["detail"]

        # Nothing of the refused batches was queued: the node finds no work.
        node_h_a = {"Authorization": f"Bearer {key_a}"}
        node_h_b = {"Authorization": f"Bearer {key_b}"}
        lease_body = {"max_tasks": 64, "models": [{"name": "iris", "version": 1}], "lease_seconds": 60}
        r = http.post("/v1/tasks/lease", headers=node_h_a, json=lease_body)
        assert r.status_code == 200 and r.json()["tasks"] == []

        # A good batch.
        r = http.post("/v1/tasks", headers=client_h, json={"tasks": [
            {"model": "iris", "inputs": {"input": [ROW]}},
            {"model": "iris", "inputs": {"input": [ROW]}, "priority": 9},
        ]})
        assert r.status_code == 201, r.text
        ids = r.json()["task_ids"]
        assert len(ids) == 2

        r = http.get(f"/v1/tasks/{ids[0]}", headers=client_h)
        assert r.status_code == 200 and r.json()["status"] == "queued"
        assert r.json()["policy"] == {"replicas": 2, "quorum": 2, "tolerance": 0.0001, "max_replicas": 4,
                                      "adaptive": True}
        # Another client can't see it.
        other_h = {"Authorization": f"Bearer {other_key}"}
        assert http.get(f"/v1/tasks/{ids[0]}", headers=other_h).status_code == 404

        # Node protocol: unknown fields refused, lease, report, validated.
        assert http.post("/v1/tasks/lease", headers=node_h_a, json={**lease_body, "x": 1}).status_code == 422
        assert http.post("/v1/tasks/lease", json=lease_body).status_code == 401
        leased_a = http.post("/v1/tasks/lease", headers=node_h_a, json=lease_body).json()
        assert [t["task_id"] for t in leased_a["tasks"]] == [ids[1], ids[0]]  # priority first
        assert leased_a["tasks"][0]["inputs"] == {"input": [ROW]}
        leased_b = http.post("/v1/tasks/lease", headers=node_h_b, json=lease_body).json()
        assert len(leased_b["tasks"]) == 2

        r = http.post("/v1/tasks/lease/extend", headers=node_h_a, json={"task_ids": ids, "lease_seconds": 300})
        assert r.status_code == 200 and sorted(r.json()["extended"]) == sorted(ids)

        def results(label):
            return {"results": [{"task_id": i, "model_version": 1, "outputs": {"label": [label]},
                                 "duration_ms": 3.0} for i in ids]}

        acks = http.post("/v1/tasks/results", headers=node_h_a, json=results(0)).json()["acks"]
        assert {a["status"] for a in acks} == {"accepted"}
        acks = http.post("/v1/tasks/results", headers=node_h_a, json=results(0)).json()["acks"]
        assert {a["status"] for a in acks} == {"duplicate"}
        acks = http.post("/v1/tasks/results", headers=node_h_b, json=results(0)).json()["acks"]
        assert {a["status"] for a in acks} == {"accepted"}

        r = http.get("/v1/tasks", params={"ids": ",".join(ids + ["t_missing"])}, headers=client_h)
        body = r.json()
        assert r.status_code == 200 and body["missing"] == ["t_missing"]
        for t in body["tasks"]:
            assert t["status"] == "validated"
            assert t["result"] == {"label": [0]}
            assert sorted(t["agreeing_node_ids"]) == sorted([node_a.id, node_b.id])

        # A node reporting for a task it never held is refused; release of a non-held task too.
        node_c, key_c = task_world.node()
        acks = http.post("/v1/tasks/results", headers={"Authorization": f"Bearer {key_c}"},
                         json=results(1)).json()["acks"]
        assert {(a["status"], a["reason"]) for a in acks} == {("refused", "this node never leased the task")}
        r = http.post("/v1/tasks/release", headers={"Authorization": f"Bearer {key_c}"}, json={"task_ids": ids})
        assert r.status_code == 200 and r.json()["released"] == []

        # A revoked key stops working once the worker's auth cache entry lapses (1 s here).
        with session_factory() as s:
            key_id = task_world.client_key.split("_")[1]
            revoke_client_key(s, key_id=key_id, actor=Actor.system("test"))
            s.commit()
        time.sleep(1.1)
        assert http.get(f"/v1/tasks/{ids[0]}", headers=client_h).status_code == 401

"""The task API's published contract (/openapi.json) is usable and truthful: its schemas resolve,
the submission schema says what the API accepts, every refusal status is declared, and refusals of
query values have FastAPI's documented validation-error shape."""

from __future__ import annotations

import jsonschema_rs
import pytest
from fastapi.testclient import TestClient

from noderr_core.audit import Actor
from noderr_core.db import make_engine, make_session_factory
from noderr_core.settings import Settings
from noderr_core.tasks import create_client

ROW = [5.1, 3.5, 1.4, 0.2]


@pytest.fixture(scope="module")
def document() -> dict:
    from api.main import create_app

    return create_app(Settings(env="test")).openapi()  # builds the document; no I/O


def _refs(node):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref":
                yield v
            else:
                yield from _refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from _refs(v)


def _resolve(document: dict, ref: str):
    assert ref.startswith("#/"), ref
    node = document
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def test_every_reference_in_the_document_resolves(document):
    refs = set(_refs(document))
    assert "#/components/schemas/SubmitTasksRequest" in refs
    for ref in refs:
        _resolve(document, ref)  # KeyError names a dangling reference


def test_submission_schema_accepts_a_batch_and_refuses_malformed_ones(document):
    body = document["paths"]["/v1/tasks"]["post"]["requestBody"]
    assert body["required"] is True
    schema = body["content"]["application/json"]["schema"]
    # A validator over the document's own components: it raises on any reference it cannot follow.
    validator = jsonschema_rs.Draft202012Validator({**schema, "components": document["components"]})
    good = {"tasks": [{"model": "iris", "inputs": {"input": [ROW]}, "priority": 5,
                       "deadline": "2030-01-01T00:00:00Z",
                       "policy": {"replicas": 3, "quorum": 2, "tolerance": 0.001}}],
            "policy": {"replicas": 2, "adaptive": False}}
    assert validator.is_valid(good)
    for bad in (
        {"tasks": []},
        {"tasks": [{"model": "Iris!", "inputs": {"input": [ROW]}}]},
        {"tasks": [{"model": "iris", "inputs": {"input": [ROW]}, "colour": "red"}]},
        {"tasks": [{"model": "iris", "inputs": {"input": [ROW]}, "policy": {"replicas": 11}}]},
        {"tasks": [{"model": "iris", "inputs": {"input": "not rows"}}]},
    ):
        assert not validator.is_valid(bad), bad


DECLARED = {
    ("post", "/v1/tasks"): {"201", "400", "401", "413", "422"},
    ("get", "/v1/tasks"): {"200", "401", "413", "422"},
    ("get", "/v1/tasks/{task_id}"): {"200", "401", "404", "422"},
    ("post", "/v1/tasks/lease"): {"200", "400", "401", "403", "422"},
    ("post", "/v1/tasks/lease/extend"): {"200", "400", "401", "403", "422"},
    ("post", "/v1/tasks/results"): {"200", "400", "401", "403", "422"},
    ("post", "/v1/tasks/release"): {"200", "400", "401", "403", "422"},
}


def test_every_task_route_declares_the_statuses_it_answers(document):
    served = {(m, p) for p, ops in document["paths"].items() if p.startswith("/v1/tasks") for m in ops}
    assert served == set(DECLARED)
    for (method, path), statuses in DECLARED.items():
        responses = document["paths"][path][method]["responses"]
        assert set(responses) == statuses, (method, path, sorted(responses))
        for code, response in responses.items():
            if code[0] == "4":  # a JSON body whose schema is published
                _resolve(document, response["content"]["application/json"]["schema"]["$ref"])


def test_refused_ids_and_bodies_have_the_validation_error_shape(db_url, tmp_path):
    from api.main import create_app

    engine = make_engine(db_url)
    with make_session_factory(engine)() as s:
        _client, key = create_client(s, name="acme", actor=Actor.system("test"))
        s.commit()
    engine.dispose()
    headers = {"Authorization": f"Bearer {key}"}
    app = create_app(Settings(env="test", database_url=db_url, state_dir=tmp_path / "state"))
    with TestClient(app) as http:
        for query in ("ids=", "ids=,%20,", "ids=&ids=t_1"):
            r = http.get(f"/v1/tasks?{query}", headers=headers)
            assert r.status_code == 422, (query, r.text)
            [error] = r.json()["detail"]
            assert error["loc"][:2] == ["query", "ids"] and "give at least one task id" in error["msg"]
        r = http.get("/v1/tasks?ids=t_1,,%20t_2&ids=t_3", headers=headers)
        assert r.status_code == 200 and r.json()["missing"] == ["t_1", "t_2", "t_3"]
        r = http.get("/v1/tasks", params={"ids": ",".join(f"t_{i}" for i in range(1001))}, headers=headers)
        assert r.status_code == 413 and "at most 1000 ids" in r.json()["detail"]

        r = http.post("/v1/tasks", content=b"{not json", headers={**headers, "content-type": "application/json"})
        assert r.status_code == 422 and r.json()["detail"][0]["type"] == "json_invalid"
        # Announced as too large: refused from the header, before a byte is read, as JSON.
        r = http.post("/v1/tasks", content=b"{}", headers={**headers, "content-type": "application/json",
                                                            "content-length": str(16 * 1024 * 1024 + 1)})
        assert r.status_code == 413 and r.headers["content-type"] == "application/json"
        assert "split the batch" in r.json()["detail"]

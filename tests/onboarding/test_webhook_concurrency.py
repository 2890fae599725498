"""Concurrent deliveries against the real uvicorn server, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

import httpx
from sqlalchemy import func, select

from noderr_core.db import make_engine
from noderr_core.tables import OperatorApplication
from noderr_demo.typeform_payloads import application_payload, encode, signed_headers


async def _post_all(url: str, bodies: list[bytes]) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        return await asyncio.gather(*[
            client.post("/webhooks/typeform", content=b, headers=signed_headers(b)) for b in bodies
        ])


def _applications(db_url: str) -> list[tuple[int, str]]:
    engine = make_engine(db_url)
    try:
        with engine.connect() as c:
            return list(c.execute(select(OperatorApplication.id, OperatorApplication.form_response_token)))
    finally:
        engine.dispose()


def test_200_concurrent_distinct_deliveries_make_200_applications(db_url, api_server_factory):
    server = api_server_factory(db_url)
    bodies = [encode(application_payload()) for _ in range(200)]
    responses = asyncio.run(_post_all(server.url, bodies))
    assert [r.status_code for r in responses] == [200] * 200
    assert {r.json()["status"] for r in responses} == {"received"}
    rows = _applications(db_url)
    assert len(rows) == 200 and len({t for _, t in rows}) == 200


def test_200_concurrent_redeliveries_make_one_application(db_url, api_server_factory):
    server = api_server_factory(db_url)
    body = encode(application_payload())
    responses = asyncio.run(_post_all(server.url, [body] * 200))
    assert [r.status_code for r in responses] == [200] * 200
    statuses = [r.json()["status"] for r in responses]
    assert statuses.count("received") == 1 and statuses.count("duplicate") == 199
    assert len({r.json()["application_id"] for r in responses}) == 1
    assert len(_applications(db_url)) == 1

"""The operator portal's download link: single use (also under concurrency), expiry, re-issue."""

from __future__ import annotations

import asyncio
import json
from urllib.parse import urlsplit
from datetime import timedelta

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from api.main import create_app
from noderr_core.audit import Actor
from noderr_core.tables import BundleDownload, DownloadToken, Node, OutboxMessage
from noderr_core.onboarding.applications import decide_application
from noderr_core.onboarding.portal import form_nonce
from noderr_core.onboarding.provisioning import carry_out_decision, reissue_download_link
from noderr_core.onboarding.screening import screen_application
from noderr_core.onboarding.typeform import ingest_delivery, load_field_map
from noderr_core.security import api_key_matches, unseal
from noderr_core.settings import Settings
from noderr_core.timeutil import utcnow
from noderr_demo.typeform_payloads import application_payload, encode
from tests.support.portal import latest_link, nonce_for, provision


@pytest.fixture
def client(settings):
    with TestClient(create_app(settings)) as c:
        yield c


def test_post_requires_our_form_nonce_and_same_origin(client, session_factory, settings):
    _, path = provision(session_factory, settings)
    assert client.post(path).status_code == 403
    assert client.post(path, data={"nonce": "forged"}).status_code == 403
    cross = client.post(path, data={"nonce": nonce_for(settings, path)}, headers={"Origin": "https://evil.example"})
    assert cross.status_code == 403 and "Cross-site" in cross.text
    # None of that spent the link.
    ok = client.post(path, data={"nonce": nonce_for(settings, path)}, headers={"Origin": "http://testserver"})
    assert ok.status_code == 200 and ok.headers["cache-control"] == "no-store"


def test_expired_and_unknown_links_explain_themselves(client, session_factory, settings):
    _, path = provision(session_factory, settings)
    with session_factory() as s:
        s.execute(update(DownloadToken).values(expires_at=utcnow() - timedelta(minutes=1)))
        s.commit()
    page = client.get(path)
    assert page.status_code == 410 and "expired" in page.text
    assert client.post(path, data={"nonce": nonce_for(settings, path)}).status_code == 410
    unknown = client.get("/portal/download/not-a-real-token")
    assert unknown.status_code == 404 and "does not exist" in unknown.text


def test_reissue_rotates_the_key_and_revokes_the_old_link(client, session_factory, settings):
    node_id, old_path = provision(session_factory, settings)
    with session_factory() as s:
        old_hash = s.get(Node, node_id).api_key_hash
        reissue_download_link(s, node_id=node_id, settings=settings, actor=Actor.system("admin-test"))
        s.commit()
    new_path = latest_link(session_factory, settings)
    assert new_path != old_path
    revoked = client.get(old_path)
    assert revoked.status_code == 410 and "newer download link" in revoked.text
    resp = client.post(new_path, data={"nonce": nonce_for(settings, new_path)})
    assert resp.status_code == 200
    import io
    import zipfile

    files = zipfile.ZipFile(io.BytesIO(resp.content))
    env = files.read(f"noderr-{node_id}/.env").decode()
    key = next(line.split("=", 1)[1] for line in env.splitlines() if line.startswith("NODERR_NODE_API_KEY="))
    with session_factory() as s:
        node = s.get(Node, node_id)
        assert node.api_key_version == 2 and node.api_key_hash != old_hash
        assert api_key_matches(key, node.api_key_hash)
        keys = [m.idempotency_key for m in s.scalars(select(OutboxMessage).where(OutboxMessage.kind == "email"))]
        assert f"email:download_link:{node_id}:2" in keys


def test_concurrent_downloads_consume_the_link_once(db_url, api_server_factory, session_factory):
    server = api_server_factory(db_url)
    settings = Settings(env="test", public_base_url=server.url)
    _, path = provision(session_factory, settings)
    nonce = nonce_for(settings, path)

    async def hammer():
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as c:
            return await asyncio.gather(*[c.post(path, data={"nonce": nonce}) for _ in range(20)])

    codes = sorted(r.status_code for r in asyncio.run(hammer()))
    assert codes == [200] + [410] * 19
    with session_factory() as s:
        assert s.scalar(select(func.count()).select_from(BundleDownload)) == 1

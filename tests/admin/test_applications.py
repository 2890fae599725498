"""Applications in the dashboard: list, search, detail, decisions, provisioning progress, reissue."""

from __future__ import annotations

from sqlalchemy import select

from noderr_core.tables import (
    ApplicationStatus,
    AuditLogEntry,
    DownloadToken,
    Node,
    OperatorApplication,
    OutboxMessage,
)
from tests.support.admin import admin_csrf, make_pending_application, provision

HTML = {"accept": "text/html"}


def _create(admin_db, **kwargs) -> int:
    with admin_db() as s:
        app_id = make_pending_application(s, **kwargs)
        s.commit()
    return app_id


def _status(admin_db, app_id: int) -> str:
    with admin_db() as s:
        return s.get(OperatorApplication, app_id).status


def _audit_actions(admin_db, subject_type: str, subject_id) -> list[str]:
    with admin_db() as s:
        return list(s.scalars(select(AuditLogEntry.action).where(
            AuditLogEntry.subject_type == subject_type,
            AuditLogEntry.subject_id == str(subject_id)).order_by(AuditLogEntry.id)))


def test_list_filters_by_status_and_searches_name_email_and_wallet(admin_client, admin_db):
    ada = _create(admin_db, full_name="Ada Lovelace", email="ada@example.com")
    grace = _create(admin_db, full_name="Grace Hopper", email="grace@navy.example")
    with admin_db() as s:
        s.get(OperatorApplication, grace).status = ApplicationStatus.REJECTED
        wallet = s.get(OperatorApplication, ada).wallet_address
        s.commit()

    page = admin_client.get("/admin/applications").text
    assert "Ada Lovelace" in page and "Grace Hopper" in page
    pending = admin_client.get("/admin/applications?status=pending_review").text
    assert "Ada Lovelace" in pending and "Grace Hopper" not in pending
    assert "Grace Hopper" in admin_client.get("/admin/applications?q=NAVY.example").text
    by_wallet = admin_client.get(f"/admin/applications?q={wallet[2:12].lower()}").text
    assert "Ada Lovelace" in by_wallet and "Grace Hopper" not in by_wallet
    assert "No applications match" in admin_client.get("/admin/applications?q=100%25_").text
    bad = admin_client.get("/admin/applications?status=bogus", headers=HTML)
    assert bad.status_code == 400 and "unknown status" in bad.text


def test_list_paginates(admin_client, admin_db):
    with admin_db() as s:
        for i in range(27):
            make_pending_application(s, full_name=f"Person {i:02d} Test")
        s.commit()
    first = admin_client.get("/admin/applications").text
    assert "page 1 of 2" in first and "Person 26 Test" in first and "Person 00 Test" not in first
    second = admin_client.get("/admin/applications?page=2").text
    assert "Person 00 Test" in second and "Person 26 Test" not in second


def test_detail_shows_answers_screening_notes_and_raw_payload(admin_client, admin_db):
    app_id = _create(admin_db, full_name="Ada Lovelace")
    page = admin_client.get(f"/admin/applications/{app_id}")
    assert page.status_code == 200
    text = page.text
    assert "Ada Lovelace" in text and "8 vCPU, 32 GB" in text  # mapped answers
    assert "favourite_model" in text and "newsletter" in text  # unmapped + hidden fields
    assert "a3a12ec67a1365927098a606107fac15" in text  # the raw payload, pretty-printed
    assert "application.received" in text  # the timeline
    assert 'id="approve"' in text and 'id="reject"' in text
    missing = admin_client.get("/admin/applications/999999", headers=HTML)
    assert missing.status_code == 404 and "does not exist" in missing.text


def test_approve_records_the_decision_once_and_refuses_a_second_time(admin_client, admin_db):
    app_id = _create(admin_db)
    csrf = admin_csrf(admin_client)
    r = admin_client.post(f"/admin/applications/{app_id}/approve", data={"csrf_token": csrf},
                          follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/admin/applications/{app_id}"
    page = admin_client.get(f"/admin/applications/{app_id}").text
    assert "approved" in page and "The onboarding pipeline now carries the decision out" in page
    assert _status(admin_db, app_id) == ApplicationStatus.APPROVED

    again = admin_client.post(f"/admin/applications/{app_id}/approve", data={"csrf_token": csrf},
                              headers=HTML)
    assert again.status_code == 409
    assert "not pending review" in again.text
    reject = admin_client.post(f"/admin/applications/{app_id}/reject",
                               data={"csrf_token": csrf, "reason": "changed my mind"}, headers=HTML)
    assert reject.status_code == 409
    assert _status(admin_db, app_id) == ApplicationStatus.APPROVED
    assert _audit_actions(admin_db, "application", app_id).count("application.approved") == 1


def test_reject_requires_a_reason(admin_client, admin_db):
    app_id = _create(admin_db)
    csrf = admin_csrf(admin_client)
    for reason in (None, "   "):
        data = {"csrf_token": csrf} | ({"reason": reason} if reason is not None else {})
        r = admin_client.post(f"/admin/applications/{app_id}/reject", data=data, headers=HTML)
        assert r.status_code == 400, r.text
        assert "a rejection needs a reason" in r.text
    assert _status(admin_db, app_id) == ApplicationStatus.PENDING_REVIEW

    r = admin_client.post(f"/admin/applications/{app_id}/reject",
                          data={"csrf_token": csrf, "reason": "Region not served yet"})
    assert r.status_code == 200
    assert "Region not served yet" in r.text
    assert _status(admin_db, app_id) == ApplicationStatus.REJECTED
    assert "application.rejected" in _audit_actions(admin_db, "application", app_id)


def test_detail_shows_provisioning_progress_and_reissue_rotates_the_key(
    admin_client, admin_db, admin_settings
):
    app_id = _create(admin_db)
    csrf = admin_csrf(admin_client)
    admin_client.post(f"/admin/applications/{app_id}/approve", data={"csrf_token": csrf})
    early = admin_client.post(f"/admin/applications/{app_id}/reissue-link",
                              data={"csrf_token": csrf}, headers=HTML)
    assert early.status_code == 409 and "provisioned" in early.text

    outcome = provision(admin_db, admin_settings, app_id)
    node_id = outcome.node_id
    page = admin_client.get(f"/admin/applications/{app_id}").text
    assert "provisioned" in page and node_id in page
    assert "E-mails: 1 queued, 0 sent" in page
    assert "On-chain registration of" in page and "pending" in page
    assert 'id="reissue"' in page

    with admin_db() as s:
        old_hash = s.get(Node, node_id).api_key_hash
    r = admin_client.post(f"/admin/applications/{app_id}/reissue-link", data={"csrf_token": csrf},
                          follow_redirects=False)
    assert r.status_code == 303
    with admin_db() as s:
        node = s.get(Node, node_id)
        assert node.api_key_hash != old_hash and node.api_key_version == 2
        tokens = s.scalars(select(DownloadToken).where(DownloadToken.node_id == node_id)
                           .order_by(DownloadToken.id)).all()
        assert len(tokens) == 2 and tokens[0].revoked_at is not None and tokens[1].revoked_at is None
        emails = s.scalars(select(OutboxMessage.idempotency_key).where(
            OutboxMessage.kind == "email")).all()
        assert f"email:download_link:{node_id}:2" in emails
    assert "node.download_link_reissued" in _audit_actions(admin_db, "node", node_id)
    page = admin_client.get(f"/admin/applications/{app_id}").text
    assert "API key rotated" in page and "E-mails: 2 queued" in page


def test_audit_page_lists_and_filters_admin_actions(admin_client, admin_db):
    app_id = _create(admin_db)
    csrf = admin_csrf(admin_client)
    admin_client.post(f"/admin/applications/{app_id}/approve", data={"csrf_token": csrf})
    everything = admin_client.get("/admin/audit").text
    assert "admin.login" in everything and "application.approved" in everything
    only = admin_client.get("/admin/audit?action=application.approved").text
    assert "application.approved" in only and "<code>admin.login</code>" not in only
    by_subject = admin_client.get(f"/admin/audit?subject_type=application&subject_id={app_id}").text
    assert "application.approved" in by_subject and "<code>admin.login</code>" not in by_subject

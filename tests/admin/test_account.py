"""An admin changes their password: the bootstrap password stops working, other sessions end."""

from fastapi.testclient import TestClient

from tests.support.admin import ADMIN_PASSWORD, admin_csrf, admin_login

NEW_PASSWORD = "a much longer new secret 42"


def test_password_change_requires_current_password_and_length(admin_client):
    csrf = admin_csrf(admin_client)
    wrong = admin_client.post("/admin/account/password", data={
        "csrf_token": csrf, "current_password": "nope", "new_password": NEW_PASSWORD})
    assert wrong.status_code == 400 and "current password is wrong" in wrong.text
    short = admin_client.post("/admin/account/password", data={
        "csrf_token": csrf, "current_password": ADMIN_PASSWORD, "new_password": "short"})
    assert short.status_code == 400 and "at least 12" in short.text
    no_csrf = admin_client.post("/admin/account/password", data={
        "current_password": ADMIN_PASSWORD, "new_password": NEW_PASSWORD})
    assert no_csrf.status_code == 403


def test_password_change_signs_out_other_sessions_and_old_password_stops_working(admin_app, admin_client):
    with TestClient(admin_app) as other:
        assert admin_login(other).status_code == 303
        assert other.get("/admin/audit", follow_redirects=False).status_code == 200

        changed = admin_client.post("/admin/account/password", data={
            "csrf_token": admin_csrf(admin_client), "current_password": ADMIN_PASSWORD,
            "new_password": NEW_PASSWORD}, follow_redirects=False)
        assert changed.status_code == 303

        # This session stays; the other browser is signed out.
        assert admin_client.get("/admin/audit", follow_redirects=False).status_code == 200
        assert other.get("/admin/audit", follow_redirects=False).status_code == 401  # signed out
        assert "admin.password_changed" in admin_client.get("/admin/audit").text

    with TestClient(admin_app) as fresh:
        assert admin_login(fresh).status_code == 401  # the old (bootstrap) password
        assert admin_login(fresh, password=NEW_PASSWORD).status_code == 303

"""Admins onboard developers: a user and a token, shown once; non-admins cannot."""

from __future__ import annotations

from tests.api.conftest import make_user


def test_admin_adds_a_user_whose_token_works(api):
    r = api.post("/api/users", json={"email": "dev@example.com"})
    assert r.status_code == 201, r.text
    token = r.json()["token"]
    assert r.json()["email"] == "dev@example.com"
    me = api.get("/api/account", headers=api.headers(token))
    assert me.status_code == 200 and me.json()["email"] == "dev@example.com"

    api.post("/api/apps", json={"name": "admins-app"})
    assert api.get("/api/apps/admins-app", headers=api.headers(token)).status_code == 404  # not a member
    api.post("/api/apps/admins-app/members", json={"email": "dev@example.com"})
    assert api.get("/api/apps/admins-app", headers=api.headers(token)).status_code == 200

    again = api.post("/api/users", json={"email": "dev@example.com"}).json()["token"]
    assert again != token  # a second token; the first keeps working
    assert api.get("/api/account", headers=api.headers(token)).status_code == 200


def test_non_admin_cannot_add_users(api):
    token = make_user(api.settings, "plain@example.com")
    r = api.post("/api/users", json={"email": "x@example.com"}, headers=api.headers(token))
    assert r.status_code == 403 and "only an admin" in r.json()["error"]


def test_bad_email_is_refused(api):
    r = api.post("/api/users", json={"email": "not-an-email"})
    assert r.status_code == 422 and "invalid email" in r.json()["error"]

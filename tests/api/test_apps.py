"""Auth, apps, members, keys and request-level error handling of the REST API."""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

import base64
import json

from tests.api.conftest import deploy_release, make_user
from unicloud import logs
from unicloud.db.models import Host, Instance, Release
from unicloud.redis_client import get_redis
from unicloud.db.session import session_scope


def ssh_public_key(comment: str = "dev@laptop") -> str:
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    line = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    return f"{line} {comment}"


def test_missing_and_wrong_token_are_401_with_a_message(api):
    r = api.client.get("/api/apps")
    assert r.status_code == 401
    assert "Authorization: Bearer" in r.json()["error"]
    assert r.headers["www-authenticate"] == "Bearer"
    r = api.client.get("/api/apps", headers={"Authorization": "Bearer uc_not-a-real-token"})
    assert r.status_code == 401 and r.json()["error"].startswith("invalid API token")
    r = api.client.get("/api/apps", headers={"Authorization": "Basic abc"})
    assert r.status_code == 401


def test_openapi_and_account(api):
    spec = api.client.get("/api/openapi.json").json()
    assert "/api/apps/{name}/logs/stream" in spec["paths"]
    assert api.get("/api/account").json()["email"] == "admin@localhost"


def test_create_info_list_and_git_url(api):
    r = api.post("/api/apps", json={"name": "myapp"})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["name"] == "myapp"
    assert body["git_url"] == f"ssh://git@127.0.0.1:{api.settings.ssh_port}/myapp.git"
    assert body["web_url"] == f"http://myapp.localhost:{api.settings.router_port}/"
    assert body["current_release"] is None and body["formation"] == {"web": 1}
    assert (api.settings.repos_dir / "myapp.git").is_dir()
    assert [a["name"] for a in api.get("/api/apps").json()] == ["myapp"]
    assert api.get("/api/apps/myapp").json()["owner"] == "admin@localhost"


def test_generated_name(api):
    r = api.post("/api/apps")
    assert r.status_code == 201
    name = r.json()["name"]
    assert api.get(f"/api/apps/{name}").status_code == 200


def test_bad_duplicate_and_unknown_names(api):
    r = api.post("/api/apps", json={"name": "My_App"})
    assert r.status_code == 422
    assert "^[a-z][a-z0-9-]{1,29}$" in r.json()["error"]
    assert api.post("/api/apps", json={"name": "a" * 31}).status_code == 422
    assert api.post("/api/apps", json={"name": "dup"}).status_code == 201
    r = api.post("/api/apps", json={"name": "dup"})
    assert r.status_code == 409 and "already taken" in r.json()["error"]
    r = api.get("/api/apps/nope")
    assert r.status_code == 404 and r.json() == {"error": "app 'nope' not found"}


def test_malformed_and_mistyped_bodies(api):
    r = api.post("/api/apps", content=b'{"name": ', headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    assert r.json()["error"].startswith("malformed JSON in request body")
    r = api.post("/api/apps", json={"name": 42})
    assert r.status_code == 422 and r.json()["error"].startswith("invalid request: name:")
    api.post("/api/apps", json={"name": "typed"})
    r = api.patch("/api/apps/typed/config", json=["A=1"])
    assert r.status_code == 422 and "JSON object" in r.json()["error"]
    r = api.get("/api/no/such/thing")
    assert r.status_code == 404 and "no such endpoint" in r.json()["error"]
    r = api.client.put("/api/apps", headers=api.headers())
    assert r.status_code == 405 and "error" in r.json()


def test_non_members_cannot_see_apps_and_members_can(api):
    api.post("/api/apps", json={"name": "private"})
    other = make_user(api.settings, "other@example.com")
    r = api.client.get("/api/apps/private", headers=api.headers(other))
    assert r.status_code == 404
    assert api.client.get("/api/apps", headers=api.headers(other)).json() == []

    r = api.post("/api/apps/private/members", json={"email": "Other@Example.com"})
    assert r.status_code == 201 and r.json()["email"] == "other@example.com"
    assert api.client.get("/api/apps/private", headers=api.headers(other)).status_code == 200
    emails = [m["email"] for m in api.get("/api/apps/private/members").json()]
    assert emails == ["admin@localhost", "other@example.com"]
    assert api.post("/api/apps/private/members", json={"email": "other@example.com"}).status_code == 409
    assert api.post("/api/apps/private/members", json={"email": "not an email"}).status_code == 422
    # A member is not the owner: adding members and destroying are refused.
    r = api.client.post("/api/apps/private/members", json={"email": "x@example.com"}, headers=api.headers(other))
    assert r.status_code == 403
    r = api.client.delete("/api/apps/private?confirm=private", headers=api.headers(other))
    assert r.status_code == 403


def test_destroy_needs_confirmation_and_removes_everything(api):
    api.post("/api/apps", json={"name": "doomed"})
    v1 = deploy_release(api.settings, "doomed")
    with session_scope(api.settings) as s:
        rel = s.query(Release).filter_by(version=v1).one()
        host = Host(name="doomhost", queue="host.doomhost")
        s.add(host)
        s.flush()
        s.add(Instance(id="i-doomed", app_id=rel.app_id, release_id=rel.id, state="up", host_id=host.id))
        s.add(Instance(id="i-done", app_id=rel.app_id, release_id=rel.id, state="stopped", host_id=host.id))
    r_ = get_redis(api.settings)
    logs.emit(r_, "doomed", "app", "web.1", "last words")
    cache = api.settings.app_cache_dir / "doomed"
    cache.mkdir(parents=True)
    (cache / "pip").write_text("x")

    r = api.delete("/api/apps/doomed")
    assert r.status_code == 400 and "--confirm doomed" in r.json()["error"]
    assert api.delete("/api/apps/doomed?confirm=other").status_code == 400
    r = api.delete("/api/apps/doomed?confirm=doomed")
    assert r.status_code == 200, r.text
    assert r.json() == {"destroyed": "doomed", "stopped_instances": ["i-doomed"]}
    # The host agent gets a stop task: nothing else would stop a VM whose rows are gone.
    (message,) = [json.loads(m) for m in r_.lrange("host.doomhost", 0, -1)]
    assert message["headers"]["task"] == "unicloud.host.stop_instance"
    assert json.loads(base64.b64decode(message["body"]))[0] == ["i-doomed", 5]
    assert r_.exists(logs.stream_key("doomed")) == 0
    assert api.get("/api/apps/doomed").status_code == 404
    with session_scope(api.settings) as s:
        assert s.query(Release).count() == 0 and s.query(Instance).count() == 0
    assert not (api.settings.repos_dir / "doomed.git").exists()
    assert not cache.exists()
    # The name is free again.
    assert api.post("/api/apps", json={"name": "doomed"}).status_code == 201


def test_keys_add_list_remove(api):
    pub = ssh_public_key("dev@laptop")
    r = api.post("/api/keys", json={"public_key": pub})
    assert r.status_code == 201, r.text
    fp = r.json()["fingerprint"]
    assert fp.startswith("SHA256:")
    assert api.post("/api/keys", json={"public_key": pub}).status_code == 409
    r = api.post("/api/keys", json={"public_key": "ssh-ed25519 notbase64!!"})
    assert r.status_code == 422 and "invalid SSH public key" in r.json()["error"]
    r = api.post("/api/keys", json={"public_key": "ssh-dss AAAA x"})
    assert r.status_code == 422 and "unsupported SSH key type" in r.json()["error"]
    assert [k["comment"] for k in api.get("/api/keys").json()] == ["dev@laptop"]

    second = api.post("/api/keys", json={"public_key": ssh_public_key("ci")}).json()
    # Fingerprints hold '/' and '+': the path takes them quoted.
    from urllib.parse import quote

    assert api.delete(f"/api/keys/{quote(second['fingerprint'], safe='')}").status_code == 200
    assert api.delete("/api/keys/dev@laptop").status_code == 200
    assert api.get("/api/keys").json() == []
    r = api.delete("/api/keys/dev@laptop")
    assert r.status_code == 404 and "no SSH key matching" in r.json()["error"]


def test_git_smart_http_is_mounted_at_git(api):
    import pytest

    pytest.importorskip("unicloud.git.http")
    api.post("/api/apps", json={"name": "gitty"})
    url = "/git/gitty.git/info/refs?service=git-receive-pack"
    assert api.client.get(url).status_code == 401
    basic = base64.b64encode(f"git:{api.token}".encode()).decode()
    r = api.client.get(url, headers={"Authorization": f"Basic {basic}"})
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/x-git-receive-pack-advertisement"

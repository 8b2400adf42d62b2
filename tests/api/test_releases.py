"""Config vars, releases, rollback, formation and ps, with image/release rows made directly."""

from __future__ import annotations

import datetime as dt

from tests.api.conftest import deploy_release, finish_release
from unicloud import logs
from unicloud.db.models import App, Host, Instance, Release
from unicloud.db.session import session_scope
from unicloud.redis_client import get_redis


def api_events(api, app: str) -> list[str]:
    return [f["line"] for _id, f in logs.recent(get_redis(api.settings), app, 50, source="unicloud")]


def test_config_before_first_deploy_makes_no_release(api):
    api.post("/api/apps", json={"name": "cfg"})
    r = api.patch("/api/apps/cfg/config", json={"GREETING": "hello", "B": "2"})
    assert r.status_code == 200, r.text
    assert r.json() == {"config": {"B": "2", "GREETING": "hello"}, "release": None}
    r = api.patch("/api/apps/cfg/config", json={"B": None})
    assert r.json()["config"] == {"GREETING": "hello"}
    assert api.get("/api/apps/cfg/config").json() == {"GREETING": "hello"}
    assert api.get("/api/apps/cfg/releases").json() == []
    assert api_events(api, "cfg") == ["Set B, GREETING config vars by admin@localhost",
                                      "Remove B config vars by admin@localhost"]


def test_config_validation(api):
    api.post("/api/apps", json={"name": "cfgv"})
    for body, needle in [({"1BAD": "x"}, "invalid config var name"), ({"PORT": "80"}, "set by the platform"),
                         ({"A": 5}, "must be a string"), ({}, "no config vars given"), ({"A": "x\u0000y"}, "NUL")]:
        r = api.patch("/api/apps/cfgv/config", json=body)
        assert r.status_code == 422, body
        assert needle in r.json()["error"]
    assert api.get("/api/apps/cfgv/config").json() == {}


def test_config_change_of_a_deployed_app_is_a_pending_release(api):
    api.post("/api/apps", json={"name": "live"})
    v1 = deploy_release(api.settings, "live")
    r = api.patch("/api/apps/live/config", json={"GREETING": "hi"})
    rel = r.json()["release"]
    assert rel["version"] == v1 + 1 and rel["status"] == "pending" and rel["current"] is False
    assert rel["description"] == "Set GREETING config vars"
    assert api_events(api, "live")[-1] == "Release v2 created by admin@localhost"
    with session_scope(api.settings) as s:
        assert s.query(Release).filter_by(version=2).one().config == {"GREETING": "hi"}


def test_releases_mark_current_and_rollback(api):
    api.post("/api/apps", json={"name": "rb"})
    deploy_release(api.settings, "rb", digest="sha256:" + "11" * 32)
    v2 = api.patch("/api/apps/rb/config", json={"A": "2"}).json()["release"]["version"]
    finish_release(api.settings, "rb", v2)
    releases = api.get("/api/apps/rb/releases").json()
    assert [(r["version"], r["current"]) for r in releases] == [(2, True), (1, False)]
    assert api.get("/api/apps/rb/releases/v1").json()["status"] == "succeeded"
    assert api.get("/api/apps/rb/releases/2").json()["current"] is True
    assert api.get("/api/apps/rb/releases/v9").status_code == 404
    assert api.get("/api/apps/rb/releases/latest-ish").status_code == 422

    r = api.post("/api/apps/rb/releases/rollback")
    assert r.status_code == 201, r.text
    assert r.json()["version"] == 3 and r.json()["description"] == "Rollback to v1"
    assert api.get("/api/apps/rb/config").json() == {}  # v1's config is back
    assert api_events(api, "rb")[-2:] == ["Rollback to v1 by admin@localhost", "Release v3 created by admin@localhost"]
    finish_release(api.settings, "rb", 3, "failed")

    r = api.post("/api/apps/rb/releases/rollback", json={"version": "v3"})
    assert r.status_code == 409 and "failed to deploy" in r.json()["error"]
    r = api.post("/api/apps/rb/releases/rollback", json={"version": 2})
    assert r.status_code == 201 and r.json()["description"] == "Rollback to v2"
    assert api.get("/api/apps/rb/config").json() == {"A": "2"}
    assert api.post("/api/apps/rb/releases/rollback", json={"version": "two"}).status_code == 422


def test_rollback_without_history_is_refused(api):
    api.post("/api/apps", json={"name": "fresh"})
    r = api.post("/api/apps/fresh/releases/rollback")
    assert r.status_code == 409 and "no current release" in r.json()["error"]
    deploy_release(api.settings, "fresh")
    r = api.post("/api/apps/fresh/releases/rollback")
    assert r.status_code == 409 and "no earlier successful release" in r.json()["error"]


def test_formation(api):
    api.post("/api/apps", json={"name": "scale"})
    deploy_release(api.settings, "scale")
    assert api.get("/api/apps/scale/formation").json() == {"formation": {"web": 1},
                                                           "process_types": {"web": "python app.py"}}
    r = api.patch("/api/apps/scale/formation", json={"web": 3})
    assert r.status_code == 200 and r.json()["formation"] == {"web": 3}
    assert api_events(api, "scale")[-1] == "Scaled to web@3 by admin@localhost"
    for body, status in [({"web": -1}, 422), ({"web": 21}, 422), ({"web": True}, 422), ({"web": "2"}, 422),
                         ({"worker": 1}, 404), ({}, 422), ([1], 422)]:
        r = api.patch("/api/apps/scale/formation", json=body)
        assert r.status_code == status, (body, r.text)
        assert r.json()["error"]
    assert api.get("/api/apps/scale/formation").json()["formation"] == {"web": 3}


def test_ps_lists_instances(api):
    api.post("/api/apps", json={"name": "psapp"})
    deploy_release(api.settings, "psapp")
    started = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
    with session_scope(api.settings) as s:
        app = s.query(App).filter_by(name="psapp").one()
        host = Host(name="local", queue="host.local")
        s.add(host)
        s.flush()
        s.add_all([
            Instance(id="i-up", app_id=app.id, release_id=app.current_release_id, index=1, host_id=host.id,
                     state="up", started_at=started, restarts=1),
            Instance(id="i-crash", app_id=app.id, release_id=app.current_release_id, index=2, host_id=host.id,
                     state="crashed", exit_code=3),
            Instance(id="i-old", app_id=app.id, release_id=app.current_release_id, index=3, state="stopped"),
        ])
    rows = api.get("/api/apps/psapp/ps").json()
    assert [(r["id"], r["name"], r["state"], r["release"], r["host"]) for r in rows] == [
        ("i-up", "web.1", "up", 1, "local"), ("i-crash", "web.2", "crashed", 1, "local")]
    assert rows[0]["uptime_seconds"] >= 299 and rows[0]["restarts"] == 1
    assert rows[1]["exit_code"] == 3 and rows[1]["uptime_seconds"] is None
    assert len(api.get("/api/apps/psapp/ps?all=true").json()) == 3

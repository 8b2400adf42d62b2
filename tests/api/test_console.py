"""The web console: token login into an HttpOnly cookie, server-rendered pages, cookie SSE."""

from __future__ import annotations

from tests.api.conftest import deploy_release, finish_release
from unicloud import logs
from unicloud.redis_client import get_redis


def login(api) -> None:
    r = api.client.post("/login", data={"token": api.token}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/"
    cookie = r.headers["set-cookie"]
    assert "unicloud_token=" in cookie and "HttpOnly" in cookie


def test_pages_need_a_login(api):
    r = api.client.get("/", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"
    assert "API token" in api.client.get("/login").text
    r = api.client.post("/login", data={"token": "uc_wrong"})
    assert r.status_code == 401 and "not valid" in r.text
    assert api.client.get("/console/apps/x/logs/stream").status_code == 401


def test_apps_and_app_page(api):
    api.post("/api/apps", json={"name": "shown"})
    deploy_release(api.settings, "shown")
    v2 = api.patch("/api/apps/shown/config", json={"GREETING": "<b>hi</b>"}).json()["release"]["version"]
    finish_release(api.settings, "shown", v2)
    login(api)
    page = api.client.get("/").text
    assert 'href="/apps/shown"' in page and "v2" in page
    page = api.client.get("/apps/shown").text
    assert "v2 <span class=\"badge\">current</span>" in page
    assert "Set GREETING config vars" in page
    assert "&lt;b&gt;hi&lt;/b&gt;" in page  # config values are escaped
    # The page opens with the recent lines; the live stream resumes after the last one shown.
    last = logs.recent(get_redis(api.settings), "shown", 1)[0][0]
    assert f'data-stream="/console/apps/shown/logs/stream?after={last}"' in page
    assert "unicloud[api]: Release v2 created by admin@localhost" in page
    assert api.client.get("/apps/unknown").status_code == 404
    r = api.client.post("/logout", follow_redirects=False)
    assert r.status_code == 303 and 'unicloud_token=""' in r.headers["set-cookie"]


def test_console_log_stream_uses_the_cookie(api):
    api.post("/api/apps", json={"name": "streamy"})
    login(api)
    r = get_redis(api.settings)
    import threading
    import time

    def later():
        time.sleep(0.3)
        logs.emit(r, "streamy", "app", "web.1", "hello console")

    threading.Thread(target=later).start()
    deadline = time.monotonic() + 30
    with api.client.stream("GET", "/console/apps/streamy/logs/stream") as resp:
        assert resp.status_code == 200
        for line in resp.iter_lines():  # a keep-alive arrives every 2 s, so the deadline is checked
            if "hello console" in line:
                break
            assert time.monotonic() < deadline, "the console stream never delivered the line"


def test_build_page_tails_only_running_builds(api):
    from tests.api.test_logs_builds import make_build
    from unicloud.build.log import BuildLog

    api.post("/api/apps", json={"name": "bpage"})
    done = make_build(api.settings, "bpage", "failed", log="-----> pip install\nERROR: no such package\n")
    running = make_build(api.settings, "bpage", "running")
    BuildLog(get_redis(api.settings), running)("-----> Python app detected")
    login(api)
    page = api.client.get(f"/apps/bpage/builds/{done}").text
    assert "ERROR: no such package" in page and "data-stream" not in page
    page = api.client.get(f"/apps/bpage/builds/{running}").text
    assert "-----&gt; Python app detected" in page  # escaped HTML
    assert f'data-stream="/console/apps/bpage/builds/{running}/stream"' in page
    with api.client.stream("GET", f"/console/apps/bpage/builds/{done}/stream") as resp:
        body = resp.read().decode()
    assert "event: end" in body and '"status": "failed"' in body
    assert api.client.get("/apps/bpage/builds/b-missing").status_code == 404

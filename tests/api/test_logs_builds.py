"""Logs (recent and SSE), drains, builds with live logs, build cache, image files."""

from __future__ import annotations

import hashlib
import json
import threading
import time

from tests.api.conftest import deploy_release
from unicloud import logs
from unicloud.build.log import BuildLog
from unicloud.db.models import App, Build
from unicloud.db.session import session_scope
from unicloud.redis_client import get_redis


def read_sse(resp, stop) -> list[dict]:
    """Parse events until `stop(event)` is true."""
    events, current = [], {}
    deadline = time.monotonic() + 30
    for line in resp.iter_lines():  # keep-alives arrive every 2 s, so the deadline is checked
        assert time.monotonic() < deadline, f"stream stalled; got {events}"
        if line == "":
            if "data" in current:
                current["data"] = json.loads(current["data"])
                events.append(current)
                if stop(current):
                    return events
            current = {}
        elif not line.startswith(":"):
            field, _, value = line.partition(": ")
            current[field] = value
    return events


def test_recent_logs_with_filters(api):
    api.post("/api/apps", json={"name": "logapp"})
    r = get_redis(api.settings)
    logs.emit(r, "logapp", "app", "web.1", "one")
    logs.emit(r, "logapp", "app", "web.2", "two")
    logs.emit(r, "logapp", "router", "router", "GET / 200")
    lines = api.get("/api/apps/logapp/logs").json()
    assert [e["line"] for e in lines] == ["one", "two", "GET / 200"]
    assert lines[0]["text"].endswith(" app[web.1]: one")
    assert [e["line"] for e in api.get("/api/apps/logapp/logs?ps=web.2").json()] == ["two"]
    assert [e["line"] for e in api.get("/api/apps/logapp/logs?ps=web").json()] == ["one", "two"]
    assert [e["line"] for e in api.get("/api/apps/logapp/logs?source=router").json()] == ["GET / 200"]
    assert [e["line"] for e in api.get("/api/apps/logapp/logs?n=1").json()] == ["GET / 200"]
    assert api.get("/api/apps/logapp/logs?source=kernel").status_code == 422
    assert api.get("/api/apps/logapp/logs?ps=web;rm").status_code == 422
    assert api.get("/api/apps/logapp/logs?n=0").status_code == 422
    assert api.get("/api/apps/logapp/logs?n=lots").status_code == 422


def test_log_stream_follows_new_lines_with_filters_and_resumes(api):
    api.post("/api/apps", json={"name": "tail"})
    r = get_redis(api.settings)
    old = logs.emit(r, "tail", "app", "web.1", "before the stream")

    def later():
        time.sleep(0.5)
        logs.emit(r, "tail", "router", "router", "filtered out")
        logs.emit(r, "tail", "app", "web.1", "live line")

    threading.Thread(target=later).start()
    with api.client.stream("GET", "/api/apps/tail/logs/stream?source=app", headers=api.headers()) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        events = read_sse(resp, lambda e: True)
    assert [e["data"]["line"] for e in events] == ["live line"]  # starts at the end, filtered
    assert events[0]["event"] == "log" and events[0]["id"] == events[0]["data"]["id"]

    # Resuming after an id replays what came since (what a reconnecting client does).
    with api.client.stream("GET", "/api/apps/tail/logs/stream",
                           headers={**api.headers(), "Last-Event-ID": old}) as resp:
        events = read_sse(resp, lambda e: e["data"]["line"] == "live line")
    assert [e["data"]["line"] for e in events] == ["filtered out", "live line"]

    assert api.client.get("/api/apps/tail/logs/stream").status_code == 401
    assert api.get("/api/apps/nope/logs/stream").status_code == 404
    assert api.get("/api/apps/tail/logs/stream?after=yesterday").status_code == 422


def test_drains(api):
    api.post("/api/apps", json={"name": "drained"})
    r = api.post("/api/apps/drained/drains", json={"url": "syslog+tcp://logs.example.com:514"})
    assert r.status_code == 201, r.text
    assert api.post("/api/apps/drained/drains", json={"url": "https://collector.example.com/in"}).status_code == 201
    assert api.post("/api/apps/drained/drains", json={"url": "syslog+tcp://logs.example.com:514"}).status_code == 409
    for url, needle in [("ftp://x.example.com", "scheme must be one of"), ("syslog://logs.example.com", "need a port"),
                        ("https://", "no host"), ("", "required")]:
        r = api.post("/api/apps/drained/drains", json={"url": url})
        assert r.status_code == 422 and needle in r.json()["error"], url
    assert [d["url"] for d in api.get("/api/apps/drained/drains").json()] == [
        "syslog+tcp://logs.example.com:514", "https://collector.example.com/in"]
    r = api.delete("/api/apps/drained/drains", params={"url": "https://collector.example.com/in"})
    assert r.status_code == 200
    assert api.delete("/api/apps/drained/drains", params={"url": "https://nope.example.com"}).status_code == 404
    assert len(api.get("/api/apps/drained/drains").json()) == 1


def make_build(settings, app_name: str, status: str, log: str | None = None) -> str:
    with session_scope(settings) as s:
        app = s.query(App).filter_by(name=app_name).one()
        b = Build(app_id=app.id, commit="c0ffee" + "0" * 34, status=status, log=log)
        s.add(b)
        s.flush()
        return b.id


def test_builds_list_info_and_live_log(api):
    api.post("/api/apps", json={"name": "built"})
    done = make_build(api.settings, "built", "succeeded", log="-----> Python app detected\nok\n")
    time.sleep(0.01)
    running = make_build(api.settings, "built", "running")
    BuildLog(get_redis(api.settings), running)("-----> Installing requirements")

    listed = api.get("/api/apps/built/builds").json()
    assert [b["id"] for b in listed] == [running, done]
    assert "log" not in listed[0]
    assert api.get(f"/api/apps/built/builds/{done}").json()["log"] == "-----> Python app detected\nok\n"
    info = api.get("/api/apps/built/builds/latest").json()
    assert info["id"] == running and info["log"] == "-----> Installing requirements\n"
    assert api.get("/api/apps/built/builds/b-nope").status_code == 404


def test_build_log_stream_replays_then_follows_to_the_end(api):
    api.post("/api/apps", json={"name": "streamed"})
    build_id = make_build(api.settings, "streamed", "running")
    writer = BuildLog(get_redis(api.settings), build_id)
    writer("first")

    def finish():
        time.sleep(0.5)
        writer("second")
        writer.end("succeeded")

    threading.Thread(target=finish).start()
    with api.client.stream("GET", f"/api/apps/streamed/builds/{build_id}/log/stream", headers=api.headers()) as resp:
        events = read_sse(resp, lambda e: e["event"] == "end")
    assert [(e["event"], e["data"].get("line") or e["data"].get("status")) for e in events] == [
        ("line", "first"), ("line", "second"), ("end", "succeeded")]

    finished = make_build(api.settings, "streamed", "failed", log="boom\n")
    with api.client.stream("GET", f"/api/apps/streamed/builds/{finished}/log/stream", headers=api.headers()) as resp:
        events = read_sse(resp, lambda e: e["event"] == "end")
    assert [e["data"] for e in events] == [{"line": "boom"}, {"status": "failed"}]


def test_build_cache_purge(api):
    api.post("/api/apps", json={"name": "cached"})
    cache = api.settings.app_cache_dir / "cached"
    (cache / "pip").mkdir(parents=True)
    (cache / "pip" / "wheel").write_bytes(b"x" * 1000)
    assert api.delete("/api/apps/cached/build-cache").json() == {"purged": True, "bytes": 1000}
    assert not cache.exists()
    assert api.delete("/api/apps/cached/build-cache").json() == {"purged": False, "bytes": 0}


def test_image_files_download_with_checksum(api):
    api.post("/api/apps", json={"name": "imaged"})
    digest = "sha256:" + "cd" * 32
    deploy_release(api.settings, "imaged", digest=digest, stored=False)
    image_dir = api.settings.images_dir / ("cd" * 32)
    image_dir.mkdir(parents=True)
    (image_dir / "kernel").write_bytes(b"\x7fkernel" * 100)
    (image_dir / "manifest.json").write_text("{}")

    r = api.get("/api/apps/imaged/images/v1/files/kernel")
    assert r.status_code == 200 and r.content == b"\x7fkernel" * 100
    assert r.headers["x-content-sha256"] == hashlib.sha256(r.content).hexdigest()
    assert api.get("/api/apps/imaged/images/current/files/manifest.json").content == b"{}"
    assert api.get("/api/apps/imaged/images/v1/files/sbom.cdx.json").status_code == 404
    r = api.get("/api/apps/imaged/images/v1/files/..%2Funicloud.db")
    assert r.status_code == 404
    assert api.get("/api/apps/imaged/images/v7/files/kernel").status_code == 404


def test_image_inspect_without_an_image(api):
    api.post("/api/apps", json={"name": "noimage"})
    r = api.get("/api/apps/noimage/images/current")
    assert r.status_code == 404 and "no current release" in r.json()["error"]
    deploy_release(api.settings, "noimage", digest="sha256:" + "ef" * 32, stored=False)
    r = api.get("/api/apps/noimage/images/v1")
    assert r.status_code == 404 and "not in the image store" in r.json()["error"]

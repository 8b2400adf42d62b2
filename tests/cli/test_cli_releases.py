"""The real `unicloud` script: config, releases, rollback (waiting for deploys), ps, logs, builds, images."""

from __future__ import annotations

import datetime
import hashlib
import json
import signal
import subprocess
import threading
import time

from tests.api.conftest import deploy_release
from tests.api.test_logs_builds import make_build
from tests.cli.conftest import UNICLOUD
from unicloud import logs
from unicloud.build.log import BuildLog
from unicloud.db.models import App, Instance, Release
from unicloud.db.session import session_scope
from unicloud.redis_client import get_redis


def act_as_scheduler(settings, app: str, status: str = "succeeded", reason: str | None = None) -> threading.Thread:
    """Finish the next pending release of `app` the way the scheduler would, once it appears."""

    def run():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with session_scope(settings) as s:
                a = s.query(App).filter_by(name=app).one()
                rel = s.query(Release).filter_by(app_id=a.id, status="pending").one_or_none()
                if rel is not None:
                    time.sleep(0.5)  # the CLI is polling meanwhile
                    rel.status = status
                    rel.failure_reason = reason
                    if status == "succeeded":
                        a.current_release_id = rel.id
                    return
            time.sleep(0.1)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_config_of_an_undeployed_app(cli):
    cli.ok("create", "cfg")
    out = cli.ok("config:set", "GREETING=hello world", "EMPTY=", "-a", "cfg")
    assert out.splitlines() == ["Setting GREETING, EMPTY and restarting cfg... done", "GREETING: hello world", "EMPTY:"]
    assert json.loads(cli.ok("config", "-a", "cfg", "--json")) == {"EMPTY": "", "GREETING": "hello world"}
    assert cli.ok("config", "-a", "cfg") == "=== cfg Config Vars\nEMPTY:\nGREETING: hello world\n"
    assert cli.ok("config:get", "GREETING", "-a", "cfg") == "hello world\n"
    assert cli.ok("config:unset", "EMPTY", "-a", "cfg") == "Unsetting EMPTY and restarting cfg... done\n"
    assert "is not KEY=value" in cli.fails("config:set", "NOEQUALS", "-a", "cfg")
    assert "invalid config var name" in cli.fails("config:set", "1X=2", "-a", "cfg")
    assert "set by the platform" in cli.fails("config:set", "PORT=80", "-a", "cfg")


def test_config_set_waits_for_the_deploy_and_reports_failure(cli):
    cli.ok("create", "live")
    deploy_release(cli.settings, "live")
    act_as_scheduler(cli.settings, "live")
    out = cli.ok("config:set", "GREETING=hi", "-a", "live")
    assert out.splitlines()[0] == "Setting GREETING and restarting live... done, v2"

    act_as_scheduler(cli.settings, "live", "failed", "web.1 exited with status 1 before answering health checks")
    res = cli.run("config:set", "GREETING=broken", "-a", "live")
    assert res.returncode == 1
    assert res.stdout.splitlines()[0] == "Setting GREETING and restarting live... failed, v3"
    assert res.stderr == "error: v3 failed to deploy: web.1 exited with status 1 before answering health checks\n"

    out = cli.ok("config:unset", "GREETING", "-a", "live", "--no-wait")
    assert out == "Unsetting GREETING and restarting live... done, v4 (deploying)\n"


def test_releases_and_rollback(cli):
    cli.ok("create", "rb")
    deploy_release(cli.settings, "rb")
    act_as_scheduler(cli.settings, "rb")
    cli.ok("config:set", "A=1", "-a", "rb")
    text = cli.ok("releases", "-a", "rb").splitlines()
    assert text[0] == "=== rb Releases - Current: v2"
    assert text[1].startswith("v2  Set A config vars") and text[1].endswith("(current)")
    assert text[2].startswith("v1  Deploy abc1234") and not text[2].endswith("(current)")
    rows = json.loads(cli.ok("releases", "-a", "rb", "--json"))
    assert [(r["version"], r["current"], r["status"]) for r in rows] == [(2, True, "succeeded"), (1, False, "succeeded")]

    act_as_scheduler(cli.settings, "rb")
    assert cli.ok("rollback", "-a", "rb").splitlines() == ["Rolling back rb... done, v3", "Rollback to v1"]
    assert json.loads(cli.ok("config", "-a", "rb", "--json")) == {}
    act_as_scheduler(cli.settings, "rb")
    assert cli.ok("rollback", "v2", "-a", "rb").splitlines() == ["Rolling back rb... done, v4", "Rollback to v2"]
    assert "v9 of rb not found" in cli.fails("rollback", "v9", "-a", "rb")
    assert "invalid release" in cli.fails("rollback", "latest", "-a", "rb")
    assert "=== Release v4 (current)" in cli.ok("releases:info", "v4", "-a", "rb")


def test_ps_and_scale(cli):
    cli.ok("create", "procs")
    assert cli.ok("ps", "-a", "procs").strip() == "No instances running for procs"
    assert json.loads(cli.ok("ps", "-a", "procs", "--json")) == []
    deploy_release(cli.settings, "procs")
    assert cli.ok("ps:scale", "web=2", "-a", "procs") == "Scaling processes... done, now running web at 2\n"
    assert "is not TYPE=N" in cli.fails("ps:scale", "web=two", "-a", "procs")
    assert "no 'worker' process type" in cli.fails("ps:scale", "worker=1", "-a", "procs")
    assert "from 0 to 20" in cli.fails("ps:scale", "web=50", "-a", "procs")

    with session_scope(cli.settings) as s:
        app = s.query(App).filter_by(name="procs").one()
        started = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=3)
        s.add_all([Instance(id="i-one", app_id=app.id, release_id=app.current_release_id, index=1, state="up",
                            started_at=started, restarts=2),
                   Instance(id="i-two", app_id=app.id, release_id=app.current_release_id, index=2, state="crashed",
                            exit_code=1)])
    lines = cli.ok("ps", "-a", "procs").splitlines()
    assert lines[0] == "=== web (2): python app.py"
    assert lines[1].split() == ["web.1:", "up", "(~", "3m)", "v1", "host=-", "restarts=2", "i-one"]
    assert lines[2].split() == ["web.2:", "crashed", "(exit", "1)", "v1", "host=-", "restarts=0", "i-two"]
    assert [i["name"] for i in json.loads(cli.ok("ps", "-a", "procs", "--json"))] == ["web.1", "web.2"]


def test_logs_recent_and_filters(cli):
    cli.ok("create", "logged")
    r = get_redis(cli.settings)
    for i in range(5):
        logs.emit(r, "logged", "app", "web.1", f"line {i}")
    logs.emit(r, "logged", "router", "router", "GET / 200")
    out = cli.ok("logs", "-n", "2", "-a", "logged").splitlines()
    assert out[0].endswith(" app[web.1]: line 4") and out[1].endswith(" router[router]: GET / 200")
    assert [e["line"] for e in json.loads(cli.ok("logs", "--source", "router", "-a", "logged", "--json"))] == ["GET / 200"]
    assert len(cli.ok("logs", "--ps", "web.1", "-a", "logged").splitlines()) == 5
    assert "unknown log source" in cli.fails("logs", "--source", "kernel", "-a", "logged")


def _read_until(proc: subprocess.Popen, needle: str, timeout: float = 60) -> list[str]:
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line.rstrip("\n"))
        if needle in line:
            return seen
    raise AssertionError(f"never saw {needle!r}; got {seen}")


def test_logs_tail_follows_and_survives_a_platform_restart(cli):
    cli.ok("create", "tailed")
    r = get_redis(cli.settings)
    logs.emit(r, "tailed", "app", "web.1", "old line")
    proc = subprocess.Popen([UNICLOUD, "logs", "--tail", "-a", "tailed", "--source", "app"], env=cli.env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
    try:
        assert _read_until(proc, "old line")[-1].endswith("app[web.1]: old line")
        time.sleep(1)
        logs.emit(r, "tailed", "router", "router", "not shown")
        logs.emit(r, "tailed", "app", "web.1", "new line")
        assert _read_until(proc, "new line")[-1].endswith("app[web.1]: new line")

        cli.restart_server()
        logs.emit(r, "tailed", "app", "web.1", "after restart")
        assert _read_until(proc, "after restart") == [next(l for l in _fmt(r, "tailed", "after restart"))]
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(20)
    assert proc.returncode == 0
    assert "reconnecting" in proc.stderr.read()


def _fmt(r, app: str, text: str):
    return (logs.format_entry(f) for _id, f in logs.recent(r, app, 50) if f["line"] == text)


def test_builds_and_cache(cli):
    cli.ok("create", "built")
    assert cli.ok("builds", "-a", "built").strip() == "built has no builds yet: build with `git push unicloud main`"
    done = make_build(cli.settings, "built", "succeeded", log="-----> Python app detected\n-----> Done\n")
    rows = json.loads(cli.ok("builds", "-a", "built", "--json"))
    assert [b["id"] for b in rows] == [done]
    assert cli.ok("builds", "-a", "built").splitlines()[1].startswith(f"{done}  succeeded  c0ffee0")
    info = cli.ok("builds:info", "-a", "built")
    assert f"=== Build {done}" in info and info.endswith("-----> Python app detected\n-----> Done\n")

    time.sleep(0.01)
    running = make_build(cli.settings, "built", "running")
    BuildLog(get_redis(cli.settings), running)("-----> Installing dependencies")
    assert cli.ok("builds:info", running, "-a", "built").endswith("-----> Installing dependencies\n")
    assert "not found" in cli.fails("builds:info", "b-nope", "-a", "built")

    cache = cli.settings.app_cache_dir / "built"
    cache.mkdir(parents=True)
    (cache / "blob").write_bytes(b"x" * 2048)
    assert cli.ok("builds:cache:purge", "-a", "built") == "Purging the build cache of built... done, 2.0 KiB freed\n"
    assert cli.ok("builds:cache:purge", "-a", "built") == "Purging the build cache of built... done, it was empty\n"


def test_images_export_checks_every_file(cli):
    cli.ok("create", "imaged")
    digest_hex = "9a" * 32
    deploy_release(cli.settings, "imaged", digest="sha256:" + digest_hex, stored=False)
    image_dir = cli.settings.images_dir / digest_hex
    image_dir.mkdir(parents=True)
    contents = {"kernel": b"K" * 5000, "rootfs.cpio.xz": b"R" * 7000, "manifest.json": b"{}", "sbom.cdx.json": b"{}"}
    for name, data in contents.items():
        (image_dir / name).write_bytes(data)
    out_dir = cli.home / "exported"
    out = cli.ok("images:export", "v1", "-o", str(out_dir), "-a", "imaged")
    assert out.splitlines()[-1] == f"Exported imaged v1 to {out_dir}"
    for name, data in contents.items():
        assert hashlib.sha256((out_dir / name).read_bytes()).digest() == hashlib.sha256(data).digest()
    assert "release v5 of imaged not found" in cli.fails("images:export", "v5", "-o", str(out_dir), "-a", "imaged")

"""deploy_push against a real Redis and database.

ONLY THE BUILD TASK AND THE SCHEDULER ARE SIMULATED here (`SimulatedBuildTask`): instead of Celery,
`enqueue` starts a thread that writes the build's log stream and end event exactly as the real
task does (unicloud.build.log.BuildLog), creates the Image and pending Release rows, and then
marks the release deployed or failed like the scheduler would. Everything else is real: the Build
row, the Redis stream following, the per-app Redis lock, wait_for_release and the ref move.
"""

from __future__ import annotations

import threading
import time
from functools import partial

import pytest
from sqlalchemy import func, select

from unicloud.build.log import BuildLog
from unicloud.db.models import App, Build, Image, Release
from unicloud.db.session import session_scope
from unicloud.git.deploy import DeployResult, build_and_release, deploy_push, lock_key
from unicloud.git.repos import ensure_repo
from unicloud.redis_client import get_redis
from unicloud.services.releases import create_release

from tests.git.helpers import APP, commit, git, make_workdir, server_ref

ZERO = "0" * 40


class SimulatedBuildTask:
    """Stands in for the Celery build task + the scheduler (see the module docstring)."""

    def __init__(self, settings, *, build_error: str | None = None, deploy_error: str | None = None):
        self.settings = settings
        self.build_error = build_error
        self.deploy_error = deploy_error
        self.threads: list[threading.Thread] = []

    def enqueue(self, build_id: str) -> None:
        t = threading.Thread(target=self._run, args=(build_id,))
        t.start()
        self.threads.append(t)

    def _run(self, build_id: str) -> None:
        log = BuildLog(get_redis(self.settings), build_id)
        log("-----> Python app detected")
        log("-----> Installing requirements with pip")
        if self.build_error:
            log("error: " + self.build_error)
            log.end("failed", reason=self.build_error)
            return
        with session_scope(self.settings) as s:
            build = s.get(Build, build_id)
            app = s.get(App, build.app_id)
            image = Image(app_id=app.id, digest=f"sha256:{build_id}")
            s.add(image)
            s.flush()
            release = create_release(s, app, image=image, config={}, process_types={"web": "python app.py"},
                                     description=f"Deploy {build.commit[:7]}", user=None, build=build,
                                     commit=build.commit)
            build.status = "succeeded"
            release_id = release.id
        log.end("succeeded", release_id=release_id)
        time.sleep(0.3)  # the scheduler boots and health-checks the new instances
        with session_scope(self.settings) as s:
            release = s.get(Release, release_id)
            release.status = "failed" if self.deploy_error else "succeeded"
            release.failure_reason = self.deploy_error


@pytest.fixture
def pushed_commit(env, tmp_path):
    """The app repo holds a commit's objects (as after receiving a pack); main does not point at it."""
    wd = make_workdir(tmp_path / "wd")
    repo = ensure_repo(env.settings, APP)
    git("push", "-q", str(repo), "main:refs/incoming/x", cwd=wd)
    return wd, git("rev-parse", "HEAD", cwd=wd).stdout.strip()


def _deploy(env, task, new, old=ZERO, out=None):
    lines: list[str] = []
    result = deploy_push(env.settings, app=APP, user_id=env.alice_id, ref="refs/heads/main", old=old, new=new,
                         out=out or lines.append, builder=partial(build_and_release, enqueue=task.enqueue))
    for t in task.threads:
        t.join(30)
    return result, lines


def test_success_streams_log_and_moves_ref(env, pushed_commit):
    _wd, new = pushed_commit
    result, lines = _deploy(env, SimulatedBuildTask(env.settings), new)
    assert result == DeployResult(True, "", 1)
    assert lines[0].startswith(f"-----> Building {APP} ({new[:7]}), build b-")
    assert lines[1:3] == ["-----> Python app detected", "-----> Installing requirements with pip"]
    assert lines[-2:] == ["Released v1", env.settings.app_url(APP)]
    assert server_ref(env.settings, APP) == new
    with session_scope(env.settings) as s:
        build = s.scalars(select(Build)).one()
        assert (build.commit, build.ref, build.user_id) == (new, "refs/heads/main", env.alice_id)


def test_build_failure(env, pushed_commit):
    _wd, new = pushed_commit
    task = SimulatedBuildTask(env.settings, build_error="no buildpack detected\n(add requirements.txt)")
    result, lines = _deploy(env, task, new)
    assert result == DeployResult(False, "build failed: no buildpack detected", None)
    assert "error: no buildpack detected" in lines
    assert server_ref(env.settings, APP) is None


def test_deploy_failure(env, pushed_commit):
    _wd, new = pushed_commit
    task = SimulatedBuildTask(env.settings, deploy_error="health check failed: web.1 did not bind $PORT within 60s")
    result, lines = _deploy(env, task, new)
    assert result == DeployResult(False, "deploy failed: health check failed: web.1 did not bind $PORT within 60s", 1)
    assert not any(line.startswith("Released") for line in lines)
    assert server_ref(env.settings, APP) is None


def test_client_gone_mid_build_still_deploys(env, pushed_commit):
    _wd, new = pushed_commit
    written: list[str] = []

    def out(line: str) -> None:
        if len(written) == 2:
            raise BrokenPipeError("client went away")
        written.append(line)

    result, _ = _deploy(env, SimulatedBuildTask(env.settings), new, out=out)
    assert result.ok and result.release_version == 1
    assert len(written) == 2
    assert server_ref(env.settings, APP) == new


def test_waits_for_the_push_in_progress(env, pushed_commit):
    _wd, new = pushed_commit
    held = get_redis(env.settings).lock(lock_key(APP), timeout=60)
    assert held.acquire(blocking=False)
    lines: list[str] = []
    results: list[DeployResult] = []
    task = SimulatedBuildTask(env.settings)
    t = threading.Thread(target=lambda: results.append(_deploy(env, task, new, out=lines.append)[0]))
    t.start()
    deadline = time.monotonic() + 10
    while "waiting for the push in progress" not in lines:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.3)
    assert len(lines) == 1 and not task.threads, "nothing may start while another push holds the lock"
    held.release()
    t.join(60)
    assert results[0].ok
    assert server_ref(env.settings, APP) == new


def test_stale_old_is_rejected_before_building(env, pushed_commit):
    wd, first = pushed_commit
    assert _deploy(env, SimulatedBuildTask(env.settings), first)[0].ok
    second = commit(wd, "second")
    git("push", "-q", str(ensure_repo(env.settings, APP)), "main:refs/incoming/y", cwd=wd)
    result, _ = _deploy(env, SimulatedBuildTask(env.settings), second, old=ZERO)  # pusher saw an empty repo
    assert not result.ok and result.reason.startswith("non-fast-forward")
    assert server_ref(env.settings, APP) == first
    with session_scope(env.settings) as s:
        assert s.scalar(select(func.count()).select_from(Build)) == 1


def test_deleting_the_deploy_branch_is_refused(env, pushed_commit):
    _wd, new = pushed_commit
    assert _deploy(env, SimulatedBuildTask(env.settings), new)[0].ok
    result, _ = _deploy(env, SimulatedBuildTask(env.settings), ZERO, old=new)
    assert result == DeployResult(False, "deleting main is not allowed: it is the deployed branch")
    assert server_ref(env.settings, APP) == new


def test_push_lock_lease_is_renewed_while_held_and_short_otherwise(env, pushed_commit, monkeypatch):
    """A live push keeps its lock past the lease; a dead holder would free it within the lease."""
    import unicloud.git.deploy as deploy

    monkeypatch.setattr(deploy, "LOCK_LEASE", 1)
    _wd, new = pushed_commit
    r = get_redis(env.settings)
    ttls: list[int] = []

    class SlowTask(SimulatedBuildTask):
        def _run(self, build_id):
            for _ in range(6):  # 3 s: three times the lease
                ttls.append(r.pttl(lock_key(APP)))
                time.sleep(0.5)
            super()._run(build_id)

    result, _lines = _deploy(env, SlowTask(env.settings), new)
    assert result.ok
    assert all(0 < ttl <= 1000 for ttl in ttls), ttls  # held the whole time, never longer than a lease
    assert r.exists(lock_key(APP)) == 0

"""Turn an accepted push of main/master into a build and a release, then move the branch.

Transport-agnostic: the SSH and HTTP receivers both call `deploy_push` at ref-update time, with an
`out` callable that writes one `remote:` line to the pusher. The branch moves only after the
release is live, under a per-app Redis lock, so the repository always matches what is deployed and
two overlapping pushes can never both claim success.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from typing import Callable, Protocol

from dulwich.objects import ZERO_SHA

from unicloud.build.log import follow
from unicloud.config import Settings
from unicloud.db.models import User
from unicloud.db.session import session_scope
from unicloud.git.repos import compare_and_set_ref, ensure_repo, read_ref
from unicloud.redis_client import get_redis
from unicloud.services.apps import get_app
from unicloud.services.builds import create_build, enqueue_build
from unicloud.services.releases import wait_for_release

log = logging.getLogger(__name__)

from unicloud.celery_app import BUILD_TIMEOUT  # noqa: E402 - one knob for the worker and the lock
RELEASE_TIMEOUT = int(os.environ.get("UNICLOUD_RELEASE_TIMEOUT", "600"))
# A waiter gives up after a whole build plus its deploy; the holder keeps a short lease that a
# thread renews, so a git process that dies mid-push frees the app within LOCK_LEASE seconds.
LOCK_TIMEOUT = BUILD_TIMEOUT + RELEASE_TIMEOUT + 300
LOCK_LEASE = 60
MAX_REASON = 200


@dataclass(frozen=True)
class DeployResult:
    ok: bool
    reason: str = ""
    release_version: int | None = None


class Builder(Protocol):
    def __call__(self, settings: Settings, *, app: str, user_id: int, ref: str, new: str,
                 out: Callable[[str], None]) -> DeployResult: ...


class _LeaseRenewer(threading.Thread):
    """Renews the push lock's lease while this process holds it."""

    def __init__(self, lock):
        super().__init__(daemon=True, name="push-lock-lease")
        self.lock, self.done = lock, threading.Event()

    def run(self) -> None:
        while not self.done.wait(LOCK_LEASE / 3):
            try:
                self.lock.reacquire()
            except Exception as exc:  # noqa: BLE001 - lost lease: the CAS on the ref still guards
                log.warning("push lock lease renewal failed: %s", exc)


def lock_key(app: str) -> str:
    return f"lock:push:{app}"


def short_reason(text: str | None) -> str:
    """First non-empty line, trimmed: git shows ref rejection reasons on one line."""
    for line in (text or "").splitlines():
        if line.strip():
            line = line.strip()
            return line if len(line) <= MAX_REASON else line[: MAX_REASON - 3] + "..."
    return "unknown error"


class _LineSink:
    """Wraps the pusher's `out`: after the first failed write (client gone) it stops writing."""

    def __init__(self, out: Callable[[str], None], app: str):
        self._out = out
        self._app = app
        self.disconnected = False

    def __call__(self, line: str) -> None:
        if self.disconnected:
            return
        try:
            self._out(line)
        except Exception as exc:  # noqa: BLE001 - any transport error means the client is gone
            self.disconnected = True
            log.warning("push to %s: client disconnected (%s); continuing the deploy", self._app, exc)


def build_and_release(settings: Settings, *, app: str, user_id: int, ref: str, new: str,
                      out: Callable[[str], None],
                      enqueue: Callable[[str], None] = enqueue_build) -> DeployResult:
    """Create the Build row, hand it to the build queue, stream its log, wait for the release."""
    with session_scope(settings) as s:
        app_row = get_app(s, app)
        user = s.get(User, user_id)
        build_id = create_build(s, app_row, user, commit=new, ref=ref).id
    enqueue(build_id)  # after commit, so the worker sees the row
    out(f"-----> Building {app} ({new[:7]}), build {build_id}")
    end: dict = {}
    try:
        for entry in follow(get_redis(settings), build_id, timeout=BUILD_TIMEOUT + 120):
            if "line" in entry:
                out(entry["line"])
            elif entry.get("event") == "end":
                end = entry
    except TimeoutError:
        return DeployResult(False, f"build failed: no result within {BUILD_TIMEOUT + 120}s")
    if end.get("status") != "succeeded":
        return DeployResult(False, f"build failed: {short_reason(end.get('reason'))}")
    if not end.get("release_id"):
        return DeployResult(False, "build failed: the build finished without creating a release")
    out("-----> Deploying (waiting for the new instances to pass their health check)")
    try:
        release = wait_for_release(settings, int(end["release_id"]), timeout=RELEASE_TIMEOUT)
    except TimeoutError:
        return DeployResult(False, f"deploy failed: not finished within {RELEASE_TIMEOUT}s")
    if release.status != "succeeded":
        return DeployResult(False, f"deploy failed: {short_reason(release.failure_reason)}", release.version)
    out(f"Released v{release.version}")
    out(settings.app_url(app))
    return DeployResult(True, "", release.version)


def deploy_push(settings: Settings, *, app: str, user_id: int, ref: str, old: str, new: str,
                out: Callable[[str], None], builder: Builder = build_and_release) -> DeployResult:
    """Build and release `new`, then move `ref` from `old` to `new`; all under the app's push lock.

    A client that disconnects does not stop anything: the build, the deploy and the ref move
    still happen, we just stop writing. `builder` is injectable so the receiver can be tested
    without the real build pipeline.
    """
    sink = _LineSink(out, app)
    if new == ZERO_SHA.decode():
        return DeployResult(False, f"deleting {ref.removeprefix('refs/heads/')} is not allowed: it is the deployed branch")
    path = ensure_repo(settings, app)
    lock = get_redis(settings).lock(lock_key(app), timeout=LOCK_LEASE, blocking=True,
                                    blocking_timeout=LOCK_TIMEOUT, thread_local=False)
    if not lock.acquire(blocking=False):
        sink("waiting for the push in progress")
        if not lock.acquire():
            return DeployResult(False, "another push to this app did not finish in time; try again")
    renewer = _LeaseRenewer(lock)
    renewer.start()
    try:
        current = read_ref(path, ref.encode()).decode()
        if current != old:
            return DeployResult(False, "non-fast-forward: the branch moved while you pushed; "
                                       "`git pull` and push again")
        result = builder(settings, app=app, user_id=user_id, ref=ref, new=new, out=sink)
        if result.ok and not compare_and_set_ref(path, ref.encode(), old.encode(), new.encode(),
                                                 message=f"deploy v{result.release_version}".encode()):
            # Cannot happen while everyone honours the lock; say so loudly if it does.
            log.error("push to %s: %s moved during a locked deploy", app, ref)
            return DeployResult(False, "deployed, but the branch moved concurrently; push again", result.release_version)
        return result
    finally:
        renewer.done.set()
        try:
            lock.release()
        except Exception as exc:  # noqa: BLE001 - an expired lock must not mask the push result
            log.warning("push to %s: releasing the push lock failed: %s", app, exc)

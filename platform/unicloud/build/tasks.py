"""The Celery build task: commit → buildpacks (sandboxed) → image → pending release.

A build either ends with a release or with a clear failure reason; it is never left "running":
a redelivered message for a build that was already running means its worker died, and the
reaper fails builds whose heartbeat stopped.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tarfile
import threading
import traceback
from pathlib import Path

from unicloud.build.log import BuildLog
from unicloud.celery_app import BUILD_TIMEOUT, celery
from unicloud.config import Settings
from unicloud.db.models import Build, Image, utcnow
from unicloud.db.session import session_scope
from unicloud.redis_client import get_redis

HEARTBEAT_TTL = 30
HEARTBEAT_EVERY = 5


def heartbeat_key(build_id: str) -> str:
    return f"build:{build_id}:heartbeat"


class _Heartbeat(threading.Thread):
    """Proves to the reaper that this build's worker is alive."""

    def __init__(self, r, build_id: str):
        super().__init__(daemon=True)
        self.r, self.key, self.done = r, heartbeat_key(build_id), threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.r.set(self.key, "1", ex=HEARTBEAT_TTL)
            self.done.wait(HEARTBEAT_EVERY)
        self.r.delete(self.key)


def export_commit(repo: Path, commit: str, dest: Path) -> int:
    """Check out the pushed tree (no .git) and return the commit time for reproducible images."""
    dest.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "--git-dir", str(repo), "archive", "--format=tar", commit],
                             capture_output=True, check=False)
    if archive.returncode != 0:
        raise RuntimeError(f"cannot export commit {commit[:7]}: {archive.stderr.decode(errors='replace').strip()}")
    tar_path = dest.parent / "source.tar"
    tar_path.write_bytes(archive.stdout)
    with tarfile.open(tar_path) as tar:
        tar.extractall(dest, filter="data")
    tar_path.unlink()
    ts = subprocess.run(["git", "--git-dir", str(repo), "show", "-s", "--format=%ct", commit],
                        capture_output=True, text=True, check=True)
    return int(ts.stdout.strip())


def _fail(settings: Settings, build_id: str, log: BuildLog, reason: str) -> None:
    if not (log.lines and reason in log.lines[-1]):  # buildpacks print their own " !" line
        log(f" !     {reason}")
    with session_scope(settings) as s:
        build = s.get(Build, build_id)
        build.status = "failed"
        build.reason = reason
        build.finished_at = utcnow()
        build.log = (build.log or "") + log.text
    log.end("failed", reason=reason)


def execute_build(settings: Settings, build_id: str) -> None:
    from unicloud.build.pipeline import BuildError, run_build
    from unicloud.image.builder import ImageAuditError, ImageBuildError, build_image
    from unicloud.image.store import ImageStore

    r = get_redis(settings)
    log = BuildLog(r, build_id)
    with session_scope(settings) as s:
        build = s.get(Build, build_id)
        if build is None or build.status in ("succeeded", "failed"):
            return  # unknown or already finished (a duplicate delivery)
        if build.status == "running":
            lost = True
        else:
            lost = False
            build.status = "running"
            build.started_at = utcnow()
        app_name, commit, config = build.app.name, build.commit, dict(build.app.config or {})
    if lost:
        _fail(settings, build_id, log, "build worker was lost mid-build; push again to retry")
        return

    heartbeat = _Heartbeat(r, build_id)
    heartbeat.start()
    work = settings.builds_dir / build_id
    try:
        log(f"-----> Building {commit[:7]} for {app_name}")
        source = work / "src"
        epoch = export_commit(settings.repos_dir / f"{app_name}.git", commit, source)
        cache_dir = settings.app_cache_dir / app_name
        cache_dir.mkdir(parents=True, exist_ok=True)
        output = run_build(source, app=app_name, cache_dir=cache_dir, env=config, log=log,
                           timeout=BUILD_TIMEOUT, work_dir=work)
        try:
            log("-----> Building VM image")
            record = build_image(output.root, output.manifest, store=ImageStore(settings.images_dir),
                                 source_date_epoch=epoch, log=log)
            _record_success(settings, build_id, record, output, log)
        except BaseException:
            output.close()
            raise
    except BuildError as exc:
        _fail(settings, build_id, log, exc.reason)
    except ImageAuditError as exc:
        _fail(settings, build_id, log, f"image audit failed: {exc}")
    except ImageBuildError as exc:
        _fail(settings, build_id, log, f"image build failed: {exc}")
    except Exception as exc:  # never leave a build running; keep the trace in the log
        for line in traceback.format_exc().splitlines():
            log(f"       {line}")
        _fail(settings, build_id, log, f"internal error: {exc.__class__.__name__}: {exc}")
    else:
        _after_release(settings, output)
    finally:
        heartbeat.done.set()
        shutil.rmtree(work, ignore_errors=True)


def _record_success(settings: Settings, build_id: str, record, output, log: BuildLog) -> None:
    """Record the image and a pending release, then end the build log."""
    from unicloud.services.releases import create_release

    manifest = record.manifest
    with session_scope(settings) as s:
        build = s.get(Build, build_id)
        app = build.app
        image = s.query(Image).filter_by(app_id=app.id, digest=record.digest).one_or_none()
        if image is None:
            image = Image(app_id=app.id, digest=record.digest, manifest=manifest,
                          kernel_size=manifest["kernel"]["size"], rootfs_size=manifest["rootfs"]["size"],
                          total_size=manifest["total_size"])
            s.add(image)
            s.flush()
        release = create_release(
            s, app, image=image, config=app.config or {}, process_types=manifest.get("process_types", {}),
            description=f"Deploy {build.commit[:7]}", user=build.user, build=build, commit=build.commit,
        )
        build.status = "succeeded"
        build.buildpack = output.buildpack
        build.stack = output.stack
        build.image_id = image.id
        build.release_id = release.id
        build.finished_at = utcnow()
        size_mb = manifest["total_size"] / 1e6
        log(f"-----> Image {record.digest[:19]} ({size_mb:.1f} MB: kernel + rootfs), audit passed")
        log(f"-----> Release v{release.version} created; deploying")
        build.log = log.text
        release_id = release.id
    log.end("succeeded", release_id=release_id)


def _after_release(settings: Settings, output) -> None:
    """Best effort once a build has succeeded: a failure here must not turn it into a failed build
    (its release exists and its end event is sent); the scheduler's interval, the worker's stale
    mount cleanup and the next build's collection catch up.

    The scheduler is woken first: unmounting the build root and collecting old images are
    housekeeping the deploy should not wait for, so they also run at the lowest CPU priority
    while the new VM boots (under TCG a boot is CPU-bound)."""
    from unicloud.scheduler.reconciler import wake

    try:
        wake(get_redis(settings))
    except Exception as exc:  # noqa: BLE001 - see the docstring
        print(f"after release: wake the scheduler: {exc.__class__.__name__}: {exc}", flush=True)
    with _lowest_cpu_priority():
        for what, step in (("close the build root", output.close),
                           ("collect old images", lambda: _collect_old_images(settings))):
            try:
                step()
            except Exception as exc:  # noqa: BLE001 - see the docstring
                print(f"after release: {what}: {exc.__class__.__name__}: {exc}", flush=True)


@contextlib.contextmanager
def _lowest_cpu_priority():
    """Nice 19 for this thread and the commands it starts, then back (the worker runs as root,
    so it may raise its priority again; elsewhere the next build just runs niced)."""
    before = os.getpriority(os.PRIO_PROCESS, 0)
    try:
        os.setpriority(os.PRIO_PROCESS, 0, 19)
    except OSError:
        pass
    try:
        yield
    finally:
        try:
            os.setpriority(os.PRIO_PROCESS, 0, before)
        except OSError as exc:
            print(f"after release: could not restore the worker's priority: {exc}", flush=True)


def _collect_old_images(settings: Settings) -> None:
    from unicloud.image.retention import collect_garbage

    for digest in collect_garbage(settings):
        print(f"retention: removed image {digest[:12]} of an old release", flush=True)


def reap_lost_builds(settings: Settings) -> int:
    """Fail builds marked running whose worker stopped heartbeating (killed worker, lost host)."""
    from sqlalchemy import select

    r = get_redis(settings)
    reaped = 0
    with session_scope(settings) as s:
        running = s.scalars(select(Build).where(Build.status == "running")).all()
        lost = [b.id for b in running if not r.exists(heartbeat_key(b.id))
                and b.started_at is not None and (utcnow() - b.started_at).total_seconds() > HEARTBEAT_TTL]
    for build_id in lost:
        _fail(settings, build_id, BuildLog(r, build_id), "build worker was lost mid-build; push again to retry")
        reaped += 1
    return reaped


@celery.task(name="unicloud.build.run", acks_late=True, reject_on_worker_lost=True)
def run_build_task(build_id: str) -> None:
    execute_build(Settings.from_env(), build_id)

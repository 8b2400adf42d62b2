"""Releases: every change of code, config or image makes a new, immutable release vN."""

from __future__ import annotations

import time

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from unicloud.db.models import App, Build, Image, Release, User
from unicloud.services import NotFound, ServiceError

FINAL_STATES = {"succeeded", "failed"}
FINISHED_CHANNEL = "releases:finished"  # the scheduler publishes a release id when it ends


def next_version(session: Session, app: App) -> int:
    return (session.scalar(select(func.max(Release.version)).where(Release.app_id == app.id)) or 0) + 1


def create_release(
    session: Session,
    app: App,
    *,
    image: Image,
    config: dict,
    process_types: dict,
    description: str,
    user: User | None,
    build: Build | None = None,
    commit: str | None = None,
) -> Release:
    """A pending release; the scheduler deploys it and marks it succeeded or failed."""
    release = Release(
        app_id=app.id,
        version=next_version(session, app),
        description=description,
        commit=commit,
        build_id=build.id if build else None,
        image_id=image.id,
        config=dict(config),
        process_types=dict(process_types),
        status="pending",
        created_by_id=user.id if user else None,
    )
    session.add(release)
    session.flush()
    return release


def list_releases(session: Session, app: App, limit: int = 50) -> list[Release]:
    return list(session.scalars(
        select(Release).where(Release.app_id == app.id).order_by(Release.version.desc()).limit(limit)
    ))


def get_release(session: Session, app: App, version: int) -> Release:
    rel = session.scalar(select(Release).where(Release.app_id == app.id, Release.version == version))
    if rel is None:
        raise NotFound(f"release v{version} of {app.name} not found")
    return rel


def parse_version(text: str | int) -> int:
    s = str(text).strip()
    if s.lower().startswith("v"):
        s = s[1:]
    if not s.isdigit():
        raise ServiceError(f"invalid release {text!r}: use vN, e.g. v3", 422)
    return int(s)


def release_config_change(session: Session, app: App, user: User, changes: dict[str, str | None]) -> Release | None:
    """Apply config changes; if the app has a deployed image, make a release that redeploys it."""
    config = dict(app.config or {})
    for key, value in changes.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    app.config = config
    current = app.current_release
    if current is None or current.image_id is None:
        return None
    set_keys = sorted(k for k, v in changes.items() if v is not None)
    unset_keys = sorted(k for k, v in changes.items() if v is None)
    parts = []
    if set_keys:
        parts.append("Set " + ", ".join(set_keys) + " config vars")
    if unset_keys:
        parts.append("Remove " + ", ".join(unset_keys) + " config vars")
    return create_release(
        session, app, image=current.image, config=config, process_types=current.process_types,
        description="; ".join(parts), user=user, commit=current.commit,
    )


def rollback(session: Session, app: App, user: User, version: int | None = None,
             image_available=None) -> Release:
    """Release the image and config of vN (default: the release before the current one), no build.

    `image_available(image) -> bool` lets the caller refuse a target whose image was collected."""
    current = app.current_release
    if version is None:
        if current is None:
            raise ServiceError(f"{app.name} has no current release to roll back from", 409)
        target = session.scalar(
            select(Release)
            .where(Release.app_id == app.id, Release.version < current.version,
                   Release.status == "succeeded", Release.image_id.is_not(None))
            .order_by(Release.version.desc())
        )
        if target is None:
            raise ServiceError(f"{app.name} has no earlier successful release to roll back to", 409)
    else:
        target = get_release(session, app, version)
        if target.image_id is None:
            raise ServiceError(f"v{version} has no image to roll back to", 409)
        if target.status == "failed":
            raise ServiceError(f"v{version} failed to deploy; refusing to roll back to it", 409)
    if image_available is not None and not image_available(target.image):
        raise ServiceError(f"the image of v{target.version} was garbage-collected (images of the last "
                           "releases are kept; see UNICLOUD_KEEP_RELEASES); push that commit again instead", 409)
    app.config = dict(target.config or {})
    return create_release(
        session, app, image=target.image, config=target.config, process_types=target.process_types,
        description=f"Rollback to v{target.version}", user=user, commit=target.commit,
    )


def announce_finished(r, release_id: int) -> None:
    """Tell waiters (`wait_for_release`) that a release reached a final state; call after commit."""
    r.publish(FINISHED_CHANNEL, str(release_id))


def wait_for_release(settings, release_id: int, timeout: float = 600.0, poll: float = 0.5) -> Release:
    """Block until the scheduler has finished deploying a release (succeeded or failed).

    The scheduler announces every finished release on FINISHED_CHANNEL, so this returns as soon
    as it commits; `poll` is only the fallback re-read of the database (pub/sub messages are
    lost while Redis restarts, and the announcement is best effort).
    """
    from unicloud.db.session import session_scope
    from unicloud.redis_client import get_redis

    deadline = time.monotonic() + timeout
    pubsub = get_redis(settings).pubsub(ignore_subscribe_messages=True)
    try:
        try:
            pubsub.subscribe(FINISHED_CHANNEL)  # before the first read: no announcement slips by
        except Exception:  # noqa: BLE001 - Redis unavailable: plain polling still works
            pubsub.close()
            pubsub = None
        while True:
            with session_scope(settings) as s:
                rel = s.get(Release, release_id)
                if rel is None:
                    raise NotFound(f"release {release_id} vanished")
                if rel.status in FINAL_STATES:
                    s.expunge(rel)
                    return rel
            if time.monotonic() > deadline:
                raise TimeoutError(f"release {release_id} did not finish deploying within {timeout:.0f}s")
            _wait_for_announcement(pubsub, release_id, min(poll, max(0.0, deadline - time.monotonic())))
    finally:
        if pubsub is not None:
            pubsub.close()


def _wait_for_announcement(pubsub, release_id: int, timeout: float) -> None:
    """Return when `release_id` is announced, or after `timeout` seconds."""
    end = time.monotonic() + timeout
    while (left := end - time.monotonic()) > 0:
        if pubsub is None:
            time.sleep(left)
            return
        try:
            msg = pubsub.get_message(timeout=left)
        except Exception:  # noqa: BLE001 - connection lost: fall back to the database re-read
            time.sleep(max(0.0, end - time.monotonic()))
            return
        if msg and str(msg.get("data")) == str(release_id):
            return

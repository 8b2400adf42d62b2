"""Builds: one per deploying push; the Celery task does the work."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from unicloud.db.models import App, Build, User
from unicloud.services import NotFound


def create_build(session: Session, app: App, user: User | None, commit: str, ref: str) -> Build:
    build = Build(app_id=app.id, user_id=user.id if user else None, commit=commit, ref=ref, status="pending")
    session.add(build)
    session.flush()
    return build


def enqueue_build(build_id: str) -> None:
    from unicloud.celery_app import BUILD_QUEUE, celery

    celery.send_task("unicloud.build.run", args=[build_id], queue=BUILD_QUEUE)


def list_builds(session: Session, app: App, limit: int = 30) -> list[Build]:
    return list(session.scalars(select(Build).where(Build.app_id == app.id).order_by(Build.created_at.desc()).limit(limit)))


def get_build(session: Session, app: App, build_id: str | None) -> Build:
    if build_id is None:
        build = session.scalar(select(Build).where(Build.app_id == app.id).order_by(Build.created_at.desc()))
    else:
        build = session.scalar(select(Build).where(Build.app_id == app.id, Build.id == build_id))
    if build is None:
        raise NotFound(f"build {build_id or '(latest)'} of {app.name} not found")
    return build

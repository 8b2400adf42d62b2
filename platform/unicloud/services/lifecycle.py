"""Destroying an app: rows go in dependency order so SQLite and PostgreSQL agree.

The scheduler notices instances of vanished apps and stops their VMs; image files stay in
the content-addressed store (another app may share a digest).
"""

from __future__ import annotations

from sqlalchemy import delete, update
from sqlalchemy.orm import Session

from unicloud.db.models import App, AppMember, Build, Image, Instance, LogDrain, Release
from unicloud.services import ServiceError


def destroy_app(session: Session, app: App, confirm: str | None) -> None:
    if confirm != app.name:
        raise ServiceError(
            f"destroying {app.name} is permanent: confirm with the app name (unicloud apps:destroy -a {app.name} --confirm {app.name})",
            400,
        )
    app_id = app.id
    app.current_release_id = None
    session.flush()
    session.execute(delete(Instance).where(Instance.app_id == app_id))
    session.execute(update(Build).where(Build.app_id == app_id).values(release_id=None, image_id=None))
    session.execute(delete(Release).where(Release.app_id == app_id))
    session.execute(delete(Build).where(Build.app_id == app_id))
    session.execute(delete(Image).where(Image.app_id == app_id))
    session.execute(delete(LogDrain).where(LogDrain.app_id == app_id))
    session.execute(delete(AppMember).where(AppMember.app_id == app_id))
    session.flush()
    for member in list(app.members):
        session.expunge(member)
    session.expunge(app)
    session.execute(delete(App).where(App.id == app_id))
    session.flush()

"""Destroying an app: rows go in dependency order so SQLite and PostgreSQL agree.

The caller gets back the VMs that were still placed on hosts, to send them stop tasks: once
the rows are gone nothing else would stop them. Image files stay in the content-addressed
store (another app may share a digest).
"""

from __future__ import annotations

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from unicloud.db.models import App, AppMember, Build, Host, Image, Instance, LogDrain, Release
from unicloud.services import ServiceError


def destroy_app(session: Session, app: App, confirm: str | None) -> list[tuple[str, str]]:
    """Delete the app and everything that hangs off it; returns (instance id, host name) to stop."""
    if confirm != app.name:
        raise ServiceError(
            f"destroying {app.name} is permanent: confirm with the app name (unicloud apps:destroy -a {app.name} --confirm {app.name})",
            400,
        )
    app_id = app.id
    placed = [(inst_id, host) for inst_id, host in session.execute(
        select(Instance.id, Host.name).join(Host, Instance.host_id == Host.id)
        .where(Instance.app_id == app_id, Instance.state != "stopped"))]
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
    return placed

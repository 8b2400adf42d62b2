"""Config vars, releases, rollback and formation: everything that changes what runs."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends
from pydantic import BaseModel
from sqlalchemy.orm import Session

from unicloud.api.deps import current_user, get_session, get_settings, member_app
from unicloud.api.events import emit_api_event, release_event_lines, wake_scheduler
from unicloud.api.serializers import release_json
from unicloud.config import Settings
from unicloud.image.retention import image_available
from unicloud.db.models import App, User
from unicloud.services import ServiceError, releases as release_service
from unicloud.services.apps import validate_config_changes
from unicloud.services.formation import scale

router = APIRouter(prefix="/api/apps/{name}")


class RollbackRequest(BaseModel):
    version: int | str | None = None


def _object(body: Any, example: str) -> dict:
    if not isinstance(body, dict):
        raise ServiceError(f"request body must be a JSON object such as {example}", 422)
    return body


@router.get("/config", tags=["config"])
def get_config(app: App = Depends(member_app)) -> dict:
    return dict(sorted((app.config or {}).items()))


@router.patch("/config", tags=["config"])
def patch_config(body: Any = Body(...), app: App = Depends(member_app), session: Session = Depends(get_session, scope="function"),
                 user: User = Depends(current_user), settings: Settings = Depends(get_settings)) -> dict:
    """`{"KEY": "value"}` sets, `{"KEY": null}` unsets; a deployed app gets a new release."""
    changes = _object(body, '{"KEY": "value", "OTHER": null}')
    validate_config_changes(changes)
    release = release_service.release_config_change(session, app, user, changes)
    session.flush()
    set_keys = sorted(k for k, v in changes.items() if v is not None)
    unset_keys = sorted(k for k, v in changes.items() if v is None)
    what = "; ".join(filter(None, [
        f"Set {', '.join(set_keys)} config vars" if set_keys else "",
        f"Remove {', '.join(unset_keys)} config vars" if unset_keys else "",
    ]))
    session.commit()
    emit_api_event(settings, app.name, *release_event_lines(what, release.version if release else None, user.email))
    if release is not None:
        wake_scheduler(settings)
    return {"config": dict(sorted(app.config.items())),
            "release": release_json(release, app.current_release_id) if release else None}


@router.get("/releases", tags=["releases"])
def list_releases(limit: int = 50, app: App = Depends(member_app), session: Session = Depends(get_session, scope="function")) -> list[dict]:
    if not 1 <= limit <= 1000:
        raise ServiceError("limit must be between 1 and 1000", 422)
    return [release_json(r, app.current_release_id) for r in release_service.list_releases(session, app, limit)]


@router.get("/releases/{version}", tags=["releases"])
def release_info(version: str, app: App = Depends(member_app), session: Session = Depends(get_session, scope="function")) -> dict:
    rel = release_service.get_release(session, app, release_service.parse_version(version))
    return release_json(rel, app.current_release_id)


@router.post("/releases/rollback", status_code=201, tags=["releases"])
def rollback(body: RollbackRequest | None = Body(None), app: App = Depends(member_app),
             session: Session = Depends(get_session, scope="function"), user: User = Depends(current_user),
             settings: Settings = Depends(get_settings)) -> dict:
    version = body.version if body else None
    target = None if version is None else release_service.parse_version(version)
    release = release_service.rollback(session, app, user, target,
                                       image_available=lambda image: image_available(settings, image))
    session.commit()
    emit_api_event(settings, app.name, *release_event_lines(release.description, release.version, user.email))
    wake_scheduler(settings)
    return release_json(release, app.current_release_id)


@router.get("/formation", tags=["formation"])
def get_formation(app: App = Depends(member_app)) -> dict:
    current = app.current_release
    return {"formation": dict(app.formation or {}),
            "process_types": dict(current.process_types or {}) if current else {}}


@router.patch("/formation", tags=["formation"])
def patch_formation(body: Any = Body(...), app: App = Depends(member_app), session: Session = Depends(get_session, scope="function"),
                    user: User = Depends(current_user), settings: Settings = Depends(get_settings)) -> dict:
    changes = _object(body, '{"web": 2}')
    formation = scale(session, app, changes)
    session.commit()
    scaled = ", ".join(f"{k}@{v}" for k, v in sorted(changes.items()))
    emit_api_event(settings, app.name, f"Scaled to {scaled} by {user.email}")
    wake_scheduler(settings)
    current = app.current_release
    return {"formation": formation, "process_types": dict(current.process_types or {}) if current else {}}

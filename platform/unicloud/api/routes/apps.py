"""Account, apps, members and SSH keys."""

from __future__ import annotations

import re

from fastapi import APIRouter, Body, Depends, Request
from pydantic import BaseModel
from sqlalchemy.orm import Session

from unicloud.api.deps import current_user, get_session, get_settings, member_app
from unicloud.api.serializers import app_json, key_json, public_host, user_json
from unicloud.api.teardown import remove_app_files, stop_vms
from unicloud.config import Settings
from unicloud.db.models import App, User
from unicloud.services import Forbidden, ServiceError, apps as app_service, keys as key_service
from unicloud.services.lifecycle import destroy_app
from unicloud.services.tokens import create_token
from unicloud.services.users import get_or_create_user

router = APIRouter(prefix="/api")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")


class AppCreate(BaseModel):
    name: str | None = None


class MemberAdd(BaseModel):
    email: str


class KeyAdd(BaseModel):
    public_key: str


def _git_repos():
    """The git receiver's repo helpers, if that component is installed."""
    try:
        from unicloud.git import repos
    except ImportError:
        return None
    return repos


@router.get("/account", tags=["account"])
def account(user: User = Depends(current_user)) -> dict:
    return user_json(user)


@router.post("/users", status_code=201, tags=["account"])
def add_user(body: MemberAdd, session: Session = Depends(get_session, scope="function"),
             user: User = Depends(current_user)) -> dict:
    """Admins onboard a developer: the user is created if needed and gets a new API token,
    shown once (only its hash is stored)."""
    if not user.is_admin:
        raise Forbidden("only an admin can add users and issue their tokens")
    email = body.email.strip()
    if not EMAIL.match(email):
        raise ServiceError(f"invalid email address {email!r}", 422)
    member = get_or_create_user(session, email)
    token = create_token(session, member, f"issued by {user.email}")
    return {**user_json(member), "token": token}


@router.get("/apps", tags=["apps"])
def list_apps(request: Request, session: Session = Depends(get_session, scope="function"), user: User = Depends(current_user),
              settings: Settings = Depends(get_settings)) -> list[dict]:
    host = public_host(settings, request.url.hostname)
    return [app_json(a, settings, host) for a in app_service.list_apps(session, user)]


@router.post("/apps", status_code=201, tags=["apps"])
def create_app(request: Request, body: AppCreate | None = Body(None), session: Session = Depends(get_session, scope="function"),
               user: User = Depends(current_user), settings: Settings = Depends(get_settings)) -> dict:
    app = app_service.create_app(session, user, body.name if body else None)
    repos = _git_repos()
    if repos is not None:
        repos.ensure_repo(settings, app.name)  # failure rolls the app row back
    session.refresh(app)
    return app_json(app, settings, public_host(settings, request.url.hostname))


@router.get("/apps/{name}", tags=["apps"])
def app_info(request: Request, app: App = Depends(member_app), settings: Settings = Depends(get_settings)) -> dict:
    return app_json(app, settings, public_host(settings, request.url.hostname))


@router.delete("/apps/{name}", tags=["apps"])
def delete_app(name: str, confirm: str | None = None, app: App = Depends(member_app),
               session: Session = Depends(get_session, scope="function"), user: User = Depends(current_user),
               settings: Settings = Depends(get_settings)) -> dict:
    if not (user.is_admin or app.owner_id == user.id):
        raise ServiceError("only the app owner can destroy it", 403)
    placed = destroy_app(session, app, confirm)
    session.commit()
    stop_vms(settings, placed)
    remove_app_files(settings, name)
    return {"destroyed": name, "stopped_instances": [inst for inst, _host in placed]}


@router.get("/apps/{name}/members", tags=["members"])
def list_members(app: App = Depends(member_app)) -> list[dict]:
    return [{"email": m.user.email, "role": m.role} for m in sorted(app.members, key=lambda m: m.user.email)]


@router.post("/apps/{name}/members", status_code=201, tags=["members"])
def add_member(body: MemberAdd, app: App = Depends(member_app), session: Session = Depends(get_session, scope="function"),
               user: User = Depends(current_user)) -> dict:
    email = body.email.strip().lower()
    if not EMAIL.match(email) or len(email) > 254:
        raise ServiceError(f"invalid email address {body.email!r}", 422)
    member = app_service.add_member(session, app, user, get_or_create_user(session, email))
    return {"email": email, "role": member.role}


@router.get("/keys", tags=["keys"])
def list_keys(user: User = Depends(current_user)) -> list[dict]:
    return [key_json(k) for k in sorted(user.keys, key=lambda k: k.id)]


@router.post("/keys", status_code=201, tags=["keys"])
def add_key(body: KeyAdd, session: Session = Depends(get_session, scope="function"), user: User = Depends(current_user)) -> dict:
    return key_json(key_service.add_key(session, user, body.public_key))


@router.delete("/keys/{ident:path}", tags=["keys"])
def remove_key(ident: str, session: Session = Depends(get_session, scope="function"), user: User = Depends(current_user)) -> dict:
    key = key_service.remove_key(session, user, ident)
    return key_json(key)

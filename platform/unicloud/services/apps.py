"""Apps, their members, config vars and formation."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from unicloud.db.models import App, AppMember, User
from unicloud.services import Conflict, Forbidden, NotFound, ServiceError
from unicloud.services.names import generate_app_name, validate_app_name

CONFIG_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Set by the platform at boot; users may not override them.
RESERVED_CONFIG = {"PORT", "DYNO"}
MAX_INSTANCES_PER_TYPE = 20


def get_app(session: Session, name: str) -> App:
    app = session.scalar(select(App).where(App.name == name))
    if app is None:
        raise NotFound(f"app {name!r} not found")
    return app


def is_member(app: App, user: User) -> bool:
    return user.is_admin or app.owner_id == user.id or any(m.user_id == user.id for m in app.members)


def get_app_for(session: Session, name: str, user: User) -> App:
    """The app, if `user` may use it. Non-members get the same 404 as unknown apps (no probing)."""
    app = get_app(session, name)
    if not is_member(app, user):
        raise NotFound(f"app {name!r} not found")
    return app


def list_apps(session: Session, user: User) -> list[App]:
    apps = session.scalars(select(App).order_by(App.name)).all()
    return [a for a in apps if is_member(a, user)]


def create_app(session: Session, user: User, name: str | None = None) -> App:
    if name is None:
        for _ in range(20):
            name = generate_app_name()
            if session.scalar(select(App.id).where(App.name == name)) is None:
                break
    validate_app_name(name)
    if session.scalar(select(App.id).where(App.name == name)) is not None:
        raise Conflict(f"app name {name!r} is already taken")
    app = App(name=name, owner_id=user.id, config={}, formation={"web": 1})
    session.add(app)
    session.flush()
    session.add(AppMember(app_id=app.id, user_id=user.id, role="owner"))
    session.flush()
    return app


def add_member(session: Session, app: App, actor: User, member: User) -> AppMember:
    if not (actor.is_admin or app.owner_id == actor.id):
        raise Forbidden("only the app owner can add members")
    if any(m.user_id == member.id for m in app.members):
        raise Conflict(f"{member.email} is already a member of {app.name}")
    m = AppMember(app_id=app.id, user_id=member.id)
    session.add(m)
    session.flush()
    return m


def validate_config_changes(changes: dict[str, str | None]) -> None:
    if not changes:
        raise ServiceError("no config vars given: use KEY=VALUE", 422)
    for key, value in changes.items():
        if not isinstance(key, str) or not CONFIG_KEY.match(key):
            raise ServiceError(f"invalid config var name {key!r}: use letters, digits and _ and do not start with a digit", 422)
        if key in RESERVED_CONFIG:
            raise ServiceError(f"{key} is set by the platform and cannot be changed", 422)
        if value is not None and not isinstance(value, str):
            raise ServiceError(f"config var {key} must be a string", 422)
        if value is not None and "\x00" in value:
            raise ServiceError(f"config var {key} contains a NUL byte", 422)


def validate_scale(app: App, process_types: dict, changes: dict[str, int]) -> None:
    if not changes:
        raise ServiceError("nothing to scale: use TYPE=N, e.g. web=2", 422)
    for ptype, qty in changes.items():
        if not isinstance(qty, int) or qty < 0 or qty > MAX_INSTANCES_PER_TYPE:
            raise ServiceError(f"{ptype}={qty}: quantity must be a whole number from 0 to {MAX_INSTANCES_PER_TYPE}", 422)
        if process_types and ptype not in process_types:
            known = ", ".join(sorted(process_types)) or "none"
            raise NotFound(f"no {ptype!r} process type in the current release (known: {known})")

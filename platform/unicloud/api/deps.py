"""Request dependencies: settings, one DB transaction per request, the authenticated user."""

from __future__ import annotations

from typing import Iterator

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from unicloud.config import Settings
from unicloud.db.models import App, User
from unicloud.db.session import session_scope
from unicloud.services import ServiceError
from unicloud.services.apps import get_app_for
from unicloud.services.tokens import user_for_token

TOKEN_HINT = "send 'Authorization: Bearer <token>' (see `unicloud login`)"


class Unauthorized(ServiceError):
    status = 401


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_session(request: Request) -> Iterator[Session]:
    with session_scope(request.app.state.settings) as session:
        yield session


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def current_user(request: Request, session: Session = Depends(get_session, scope="function")) -> User:
    token = bearer_token(request)
    if token is None:
        raise Unauthorized(f"authentication required: {TOKEN_HINT}")
    user = user_for_token(session, token)
    if user is None:
        raise Unauthorized(f"invalid API token: {TOKEN_HINT}")
    return user


def member_app(name: str, session: Session = Depends(get_session, scope="function"), user: User = Depends(current_user)) -> App:
    """The app named in the path, if the caller is a member (otherwise 404, like an unknown app)."""
    return get_app_for(session, name, user)


def authorize_app(settings: Settings, token: str | None, name: str) -> str:
    """Check a token and membership in a short transaction of its own.

    Streaming endpoints use this instead of `member_app`, so no database transaction stays
    open (pinning SQLite's WAL) for as long as a client follows a stream.
    """
    if token is None:
        raise Unauthorized(f"authentication required: {TOKEN_HINT}")
    with session_scope(settings) as session:
        user = user_for_token(session, token)
        if user is None:
            raise Unauthorized(f"invalid API token: {TOKEN_HINT}")
        return get_app_for(session, name, user).name


def redis_for(settings: Settings):
    """The platform Redis, or a 503 that says why there is none."""
    from unicloud.redis_client import get_redis

    try:
        return get_redis(settings)
    except RuntimeError as exc:
        raise ServiceError(f"logs are unavailable: {exc}", 503) from None

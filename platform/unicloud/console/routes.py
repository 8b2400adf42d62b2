"""Console pages. The token lives in an HttpOnly cookie; pages read the database directly
through the same services as the API, and live views use cookie-authenticated SSE endpoints."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from fastapi import APIRouter, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from fastapi.responses import StreamingResponse

from unicloud import logs
from unicloud.api.deps import Unauthorized, authorize_app
from unicloud.api.routes.runtime import build_stream_response
from unicloud.api.serializers import build_json, instance_json, release_json
from unicloud.api.streams import SSE_HEADERS, app_log_events, live_build_lines, resume_point
from unicloud.db.session import session_scope
from unicloud.redis_client import get_redis
from unicloud.services import NotFound, ServiceError, apps as app_service, builds as build_service
from unicloud.services import releases as release_service
from unicloud.services.instances import list_instances
from unicloud.services.tokens import user_for_token

HERE = Path(__file__).parent
COOKIE = "unicloud_token"
templates = Jinja2Templates(directory=str(HERE / "templates"))
RECENT_LOG_LINES = 100


def _when(value: str | None) -> str:
    """ISO timestamps as `2026-12-03 14:09:43 UTC`."""
    try:
        t = dt.datetime.fromisoformat(value) if value else None
    except ValueError:
        return value or ""
    if t is None:
        return ""
    t = t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)
    return f"{t.astimezone(dt.timezone.utc):%Y-%m-%d %H:%M:%S} UTC"


def _duration(seconds: int | None) -> str:
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60}s"
    if seconds < 86400:
        return f"{seconds // 3600}h {seconds % 3600 // 60}m"
    return f"{seconds // 86400}d {seconds % 86400 // 3600}h"


templates.env.filters["when"] = _when
templates.env.filters["duration"] = _duration
router = APIRouter(include_in_schema=False)


class LoginRequired(Exception):
    pass


def _token(request: Request) -> str | None:
    return request.cookies.get(COOKIE) or None


def _settings(request: Request):
    return request.app.state.settings


def _to_login() -> RedirectResponse:
    return RedirectResponse("/login", status_code=303)


def _error_page(request: Request, status: int, message: str) -> HTMLResponse:
    return templates.TemplateResponse(request, "error.html", {"message": message, "status": status}, status_code=status)


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request):
    return templates.TemplateResponse(request, "login.html", {"error": None})


@router.post("/login")
def login(request: Request, token: str = Form("")):
    with session_scope(_settings(request)) as session:
        user = user_for_token(session, token.strip())
        email = user.email if user else None
    if email is None:
        return templates.TemplateResponse(request, "login.html", {"error": "That API token is not valid."}, status_code=401)
    resp = RedirectResponse("/", status_code=303)
    resp.set_cookie(COOKIE, token.strip(), httponly=True, samesite="strict", max_age=30 * 86400,
                    secure=request.url.scheme == "https")
    return resp


@router.post("/logout")
def logout():
    resp = _to_login()
    resp.delete_cookie(COOKIE)
    return resp


@router.get("/", response_class=HTMLResponse)
def apps_page(request: Request):
    with session_scope(_settings(request)) as session:
        user = user_for_token(session, _token(request))
        if user is None:
            return _to_login()
        rows = [{"name": a.name, "url": _settings(request).app_url(a.name),
                 "release": a.current_release.version if a.current_release else None,
                 "formation": dict(a.formation or {})} for a in app_service.list_apps(session, user)]
        return templates.TemplateResponse(request, "apps.html", {"user": user.email, "apps": rows})


def _signed_in_app(request: Request, session, name: str):
    """(user, app, None) for a member, else (None, None, the login redirect or a 404 page)."""
    user = user_for_token(session, _token(request))
    if user is None:
        return None, None, _to_login()
    try:
        return user, app_service.get_app_for(session, name, user), None
    except NotFound as exc:
        return None, None, _error_page(request, 404, exc.message)


@router.get("/apps/{name}", response_class=HTMLResponse)
def app_page(request: Request, name: str):
    settings = _settings(request)
    with session_scope(settings) as session:
        user, app, refusal = _signed_in_app(request, session, name)
        if refusal is not None:
            return refusal
        ctx = {
            "user": user.email,
            "app": {"name": app.name, "url": settings.app_url(app.name), "formation": dict(app.formation or {})},
            "releases": [release_json(r, app.current_release_id) for r in release_service.list_releases(session, app, 20)],
            "builds": [build_json(b) for b in build_service.list_builds(session, app, 10)],
            "instances": [instance_json(i) for i in list_instances(session, app)],
            "config": dict(sorted((app.config or {}).items())),
            **_recent_logs(settings, app.name),
        }
        return templates.TemplateResponse(request, "app.html", ctx)


def _recent_logs(settings, app_name: str) -> dict:
    """The page opens with the last lines; the live stream then resumes after the last one shown."""
    try:
        entries = logs.recent(get_redis(settings), app_name, RECENT_LOG_LINES)
    except Exception:  # noqa: BLE001 - the page is still useful without logs
        return {"log_lines": [], "log_after": "", "logs_unavailable": True}
    return {"log_lines": [logs.format_entry(f) for _id, f in entries],
            "log_after": entries[-1][0] if entries else "", "logs_unavailable": False}


@router.get("/apps/{name}/builds/{build_id}", response_class=HTMLResponse)
def build_page(request: Request, name: str, build_id: str):
    settings = _settings(request)
    with session_scope(settings) as session:
        user, app, refusal = _signed_in_app(request, session, name)
        if refusal is not None:
            return refusal
        try:
            build = build_service.get_build(session, app, build_id)
        except NotFound as exc:
            return _error_page(request, 404, exc.message)
        running = build.status in ("pending", "running")
        log = "\n".join(live_build_lines(settings, build.id)) if running else (build.log or "")
        return templates.TemplateResponse(request, "build.html", {
            "user": user.email, "app": {"name": app.name}, "build": build_json(build), "log": log, "running": running})


def _stream_error(exc: ServiceError) -> Response:
    return Response(exc.message, status_code=exc.status, media_type="text/plain")


@router.get("/console/apps/{name}/logs/stream")
def console_log_stream(request: Request, name: str, source: str | None = None):
    settings = _settings(request)
    try:
        app_name = authorize_app(settings, _token(request), name)
    except (Unauthorized, NotFound) as exc:
        return _stream_error(exc)
    if source not in (None, "", "app", "router", "unicloud"):
        return Response("unknown source", status_code=422)
    try:
        after = resume_point(request, None)
    except ServiceError as exc:
        return _stream_error(exc)
    return StreamingResponse(app_log_events(settings, app_name, after=after, source=source or None),
                             media_type="text/event-stream", headers=SSE_HEADERS)


@router.get("/console/apps/{name}/builds/{build_id}/stream")
def console_build_stream(request: Request, name: str, build_id: str):
    settings = _settings(request)
    try:
        return build_stream_response(settings, authorize_app(settings, _token(request), name), build_id)
    except (Unauthorized, NotFound) as exc:
        return _stream_error(exc)


def mount_console(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/static/console", StaticFiles(directory=str(HERE / "static")), name="console-static")

"""What is running and what was built: ps, builds, build cache, images."""

from __future__ import annotations

import shutil

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, StreamingResponse
from sqlalchemy.orm import Session

from unicloud.api.deps import authorize_app, bearer_token, get_session, get_settings, member_app
from unicloud.api.errors import Unavailable
from unicloud.api.serializers import build_json, image_json, instance_json
from unicloud.api.streams import SSE_HEADERS, build_log_events, live_build_lines
from unicloud.config import Settings
from unicloud.db.models import App, Release
from unicloud.services import NotFound, ServiceError, builds as build_service, releases as release_service
from unicloud.db.session import session_scope
from unicloud.image.store import IMAGE_FILES, file_sha256
from unicloud.services.apps import get_app
from unicloud.services.instances import list_instances

router = APIRouter(prefix="/api/apps/{name}")


@router.get("/ps", tags=["ps"])
def ps(all: bool = False, app: App = Depends(member_app), session: Session = Depends(get_session, scope="function")) -> list[dict]:
    return [instance_json(i) for i in list_instances(session, app, include_stopped=all)]


def _release_version(session: Session, release_id: int | None) -> int | None:
    if release_id is None:
        return None
    rel = session.get(Release, release_id)
    return rel.version if rel else None


@router.get("/builds", tags=["builds"])
def list_builds(limit: int = 30, app: App = Depends(member_app), session: Session = Depends(get_session, scope="function")) -> list[dict]:
    if not 1 <= limit <= 500:
        raise ServiceError("limit must be between 1 and 500", 422)
    return [build_json(b, release_version=_release_version(session, b.release_id))
            for b in build_service.list_builds(session, app, limit)]


def _build(session: Session, app: App, build_id: str):
    return build_service.get_build(session, app, None if build_id in ("latest", "") else build_id)


@router.get("/builds/{build_id}", tags=["builds"])
def build_info(build_id: str, app: App = Depends(member_app), session: Session = Depends(get_session, scope="function"),
               settings: Settings = Depends(get_settings)) -> dict:
    """`latest` names the newest build. While a build runs, its log comes live from Redis."""
    build = _build(session, app, build_id)
    if build.status in ("pending", "running"):
        lines = live_build_lines(settings, build.id)
        log = "\n".join(lines) + ("\n" if lines else "")
    else:
        log = build.log or ""
    return build_json(build, log=log, release_version=_release_version(session, build.release_id))


@router.get("/builds/{build_id}/log/stream", tags=["builds"])
def build_log_stream(name: str, build_id: str, request: Request, settings: Settings = Depends(get_settings)):
    """Server-sent events: `line` events from the start of the build, then one `end` event."""
    return build_stream_response(settings, authorize_app(settings, bearer_token(request), name), build_id)


def build_stream_response(settings: Settings, app_name: str, build_id: str) -> StreamingResponse:
    with session_scope(settings) as session:
        build_id = _build(session, get_app(session, app_name), build_id).id
    return StreamingResponse(build_log_events(settings, build_id), media_type="text/event-stream", headers=SSE_HEADERS)


@router.delete("/build-cache", tags=["builds"])
def purge_build_cache(app: App = Depends(member_app), settings: Settings = Depends(get_settings)) -> dict:
    path = settings.app_cache_dir / app.name
    existed = path.exists()
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if existed else 0
    if existed:
        shutil.rmtree(path)
    return {"purged": existed, "bytes": size}


def release_for(session: Session, app: App, version: str) -> Release:
    if version in ("current", "latest"):
        if app.current_release is None:
            raise NotFound(f"{app.name} has no current release; deploy with git push first")
        return app.current_release
    return release_service.get_release(session, app, release_service.parse_version(version))


def image_dir(settings: Settings, release: Release):
    if release.image is None:
        raise NotFound(f"release v{release.version} has no image")
    path = settings.images_dir / release.image.digest.split(":")[-1]
    if not path.is_dir():
        raise NotFound(f"the image of v{release.version} ({release.image.digest}) is not in the image store at {path}")
    return path


@router.get("/images/{version}", tags=["images"])
def inspect(version: str, app: App = Depends(member_app), session: Session = Depends(get_session, scope="function"),
            settings: Settings = Depends(get_settings)) -> dict:
    """`version` is vN, N or `current`."""
    release = release_for(session, app, version)
    path = image_dir(settings, release)
    try:
        from unicloud.image.inspect import inspect_image
        from unicloud.image.store import ImageStoreError
    except ImportError:
        raise Unavailable("image inspection is not available in this installation (unicloud.image.inspect is missing)") from None
    try:
        report = dict(inspect_image(path))
    except ImageStoreError as exc:
        raise ServiceError(f"the stored image of v{release.version} failed verification: {exc}", 500) from None
    # The inspector's report is the body (sizes, sha256, audit, sbom, ...); the API adds where it
    # came from and where each file can be downloaded.
    downloads = [{"name": f, "size": (path / f).stat().st_size,
                  "url": f"/api/apps/{app.name}/images/v{release.version}/files/{f}"}
                 for f in IMAGE_FILES if (path / f).is_file()]
    for key, value in {"app": app.name, "release": release.version, **image_json(release.image),
                       "downloads": downloads}.items():
        report.setdefault(key, value)
    return report


@router.get("/images/{version}/files/{filename}", tags=["images"])
def image_file(version: str, filename: str, app: App = Depends(member_app), session: Session = Depends(get_session, scope="function"),
               settings: Settings = Depends(get_settings)):
    if filename not in IMAGE_FILES:
        raise NotFound(f"no image file {filename!r}; image files are: {', '.join(IMAGE_FILES)}")
    release = release_for(session, app, version)
    path = image_dir(settings, release) / filename
    if not path.is_file():
        raise NotFound(f"the image of v{release.version} has no {filename}")
    return FileResponse(path, filename=filename, media_type="application/octet-stream",
                        headers={"X-Content-SHA256": file_sha256(path)})

"""Model rows as the JSON the CLI and the console read."""

from __future__ import annotations

import datetime as dt

from unicloud.config import Settings
from unicloud.db.models import App, Build, Image, Instance, LogDrain, Release, SSHKey, User, utcnow


def iso(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    return value.isoformat(timespec="seconds")


def git_urls(settings: Settings, host: str, name: str) -> dict[str, str]:
    host = f"[{host}]" if ":" in host else host  # IPv6 literals need brackets in URLs
    return {
        "git_url": f"ssh://git@{host}:{settings.ssh_port}/{name}.git",
        "git_http_url": f"http://{host}:{settings.api_port}/git/{name}.git",
    }


def public_host(settings: Settings, request_host: str | None) -> str:
    """The host clients reached us on; a wildcard bind address is useless to them."""
    if request_host and request_host not in ("testserver",):
        return request_host
    return "127.0.0.1" if settings.bind in ("0.0.0.0", "::", "") else settings.bind


def user_json(user: User) -> dict:
    return {"id": user.id, "email": user.email, "is_admin": user.is_admin, "created_at": iso(user.created_at)}


def app_json(app: App, settings: Settings, host: str) -> dict:
    current = app.current_release
    return {
        "name": app.name,
        "owner": app.owner.email if app.owner else None,
        "web_url": settings.app_url(app.name),
        **git_urls(settings, host, app.name),
        "formation": dict(app.formation or {}),
        "memory_mb": app.memory_mb,
        "current_release": current.version if current else None,
        "members": sorted(m.user.email for m in app.members),
        "created_at": iso(app.created_at),
    }


def key_json(key: SSHKey) -> dict:
    return {"id": key.id, "type": key.key_type, "fingerprint": key.fingerprint, "comment": key.comment,
            "public_key": f"{key.public_key} {key.comment}".strip(), "created_at": iso(key.created_at)}


def release_json(release: Release, current_id: int | None) -> dict:
    return {
        "version": release.version,
        "description": release.description,
        "status": release.status,
        "current": release.id == current_id,
        "commit": release.commit,
        "build_id": release.build_id,
        "image": release.image.digest if release.image else None,
        "process_types": dict(release.process_types or {}),
        "failure_reason": release.failure_reason,
        "created_by": release.created_by.email if release.created_by else None,
        "created_at": iso(release.created_at),
        "finished_at": iso(release.finished_at),
    }


def _seconds_since(value: dt.datetime | None) -> int | None:
    if value is None:
        return None
    return max(0, int((utcnow() - value).total_seconds()))


def instance_json(inst: Instance) -> dict:
    return {
        "id": inst.id,
        "type": inst.process_type,
        "name": f"{inst.process_type}.{inst.index}",
        "host": inst.host.name if inst.host else None,
        "host_port": inst.host_port,
        "state": inst.state,
        "release": inst.release.version if inst.release else None,
        "started_at": iso(inst.started_at),
        "uptime_seconds": _seconds_since(inst.started_at) if inst.state == "up" else None,
        "restarts": inst.restarts,
        "exit_code": inst.exit_code,
        "last_error": inst.last_error,
        "memory_mb": inst.memory_mb,
    }


def build_json(build: Build, log: str | None = None, release_version: int | None = None) -> dict:
    out = {
        "id": build.id,
        "status": build.status,
        "commit": build.commit,
        "ref": build.ref,
        "reason": build.reason,
        "buildpack": build.buildpack,
        "stack": build.stack,
        "user": build.user.email if build.user else None,
        "image": build.image.digest if build.image else None,
        "release": release_version,
        "created_at": iso(build.created_at),
        "started_at": iso(build.started_at),
        "finished_at": iso(build.finished_at),
    }
    if log is not None:
        out["log"] = log
    return out


def image_json(image: Image) -> dict:
    return {"digest": image.digest, "kernel_size": image.kernel_size, "rootfs_size": image.rootfs_size,
            "total_size": image.total_size, "created_at": iso(image.created_at)}


def drain_json(drain: LogDrain) -> dict:
    return {"id": drain.id, "url": drain.url, "created_at": iso(drain.created_at)}

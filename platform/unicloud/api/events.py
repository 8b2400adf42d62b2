"""`unicloud[api]: ...` lines in the app's log stream, like Heroku's `app[api]` events."""

from __future__ import annotations

import logging

from unicloud import logs
from unicloud.config import Settings
from unicloud.redis_client import get_redis

log = logging.getLogger("unicloud.api")


def emit_api_event(settings: Settings, app_name: str, *lines: str) -> None:
    """Best effort: a change that was committed must not fail because Redis is briefly away."""
    try:
        r = get_redis(settings)
        for line in lines:
            logs.emit(r, app_name, "unicloud", "api", line)
    except Exception as exc:  # noqa: BLE001 - logging must never break an API call
        log.warning("could not write api event for %s: %s", app_name, exc)


def release_event_lines(what: str | None, version: int | None, email: str) -> list[str]:
    lines = [f"{what} by {email}"] if what else []
    if version is not None:
        lines.append(f"Release v{version} created by {email}")
    return lines


def wake_scheduler(settings: Settings) -> None:
    """Desired state changed (a release or a formation): ask for a reconciler pass now rather than
    at its next interval. Best effort, like the events above."""
    from unicloud.scheduler.reconciler import wake

    try:
        wake(get_redis(settings))
    except Exception as exc:  # noqa: BLE001 - the scheduler's own interval still picks it up
        log.warning("could not wake the scheduler: %s", exc)

"""What happens outside the database when an app is destroyed: VMs, repo, cache, log stream."""

from __future__ import annotations

import logging
import shutil
from functools import lru_cache

from unicloud import logs
from unicloud.config import Settings
from unicloud.redis_client import get_redis

log = logging.getLogger("unicloud.api")
STOP_TASK = "unicloud.host.stop_instance"  # the host agent's task (unicloud.hypervisor.tasks)
STOP_GRACE = 5


@lru_cache(maxsize=4)
def _celery_for(redis_url: str):
    from unicloud.celery_app import make_celery
    from unicloud.config import Settings as _S

    return make_celery(_S(redis_url=redis_url))


def stop_vms(settings: Settings, placed: list[tuple[str, str]]) -> None:
    """Ask each host agent to stop the destroyed app's VMs (its rows are already gone)."""
    if not placed or not settings.redis_url:
        return
    from unicloud.celery_app import host_queue

    app = _celery_for(settings.redis_url)
    for instance_id, host in placed:
        try:
            app.send_task(STOP_TASK, args=[instance_id, STOP_GRACE], queue=host_queue(host))
        except Exception as exc:  # noqa: BLE001 - the agent also stops unwanted VMs when it restarts
            log.warning("could not ask %s to stop %s: %s", host, instance_id, exc)


def remove_app_files(settings: Settings, name: str) -> None:
    try:
        from unicloud.git import repos
    except ImportError:
        repos = None
    if repos is not None:
        repos.remove_repo(settings, name)
    shutil.rmtree(settings.app_cache_dir / name, ignore_errors=True)
    try:
        get_redis(settings).delete(logs.stream_key(name))  # a new app of that name starts clean
    except Exception as exc:  # noqa: BLE001
        log.warning("could not delete the log stream of %s: %s", name, exc)

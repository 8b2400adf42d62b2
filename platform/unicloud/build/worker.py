"""The `worker` Procfile process: a Celery worker on the `builds` queue plus the lost-build reaper."""

from __future__ import annotations

import os
import threading
import time

from unicloud.celery_app import BUILD_QUEUE, celery
from unicloud.config import Settings


def _reaper_loop(settings: Settings, every: float = 10.0) -> None:
    from unicloud.build.tasks import reap_lost_builds

    while True:
        try:
            reap_lost_builds(settings)
        except Exception as exc:  # keep reaping; report why
            print(f"reaper: {exc}", flush=True)
        time.sleep(every)


def main() -> None:
    settings = Settings.from_env()
    # A worker that died mid-build (SIGKILL, OOM, host reboot) left its overlays mounted; this
    # process is the only build worker for this data dir, so whatever is mounted there is stale.
    from unicloud.build.sandbox import cleanup_stale_mounts

    for mount in cleanup_stale_mounts(settings.builds_dir):
        print(f"worker: unmounted stale build overlay {mount}", flush=True)
    threading.Thread(target=_reaper_loop, args=(settings,), daemon=True).start()
    concurrency = os.environ.get("UNICLOUD_BUILD_CONCURRENCY", "2")
    celery.worker_main(["worker", "-Q", BUILD_QUEUE, "-c", concurrency, "-n", f"builds@{settings.host_name}",
                        "--loglevel", "INFO", "-P", "prefork", "--without-gossip", "--without-mingle"])


if __name__ == "__main__":
    main()

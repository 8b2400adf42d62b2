"""The Celery application shared by build workers (queue `builds`) and host agents (`host.<name>`)."""

from __future__ import annotations

import os

from celery import Celery

from unicloud.config import Settings

BUILD_QUEUE = "builds"
BUILD_TIMEOUT = int(os.environ.get("UNICLOUD_BUILD_TIMEOUT", "900"))  # Heroku's 15 minutes


def host_queue(host_name: str) -> str:
    return f"host.{host_name}"


def make_celery(settings: Settings | None = None) -> Celery:
    settings = settings or Settings.from_env()
    url = settings.redis_url or "redis://127.0.0.1:6379/0"
    app = Celery("unicloud", broker=url, backend=url, include=["unicloud.build.tasks", "unicloud.hypervisor.tasks"])
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],  # never pickle
        task_acks_late=True,  # a worker killed mid-task leaves the message for redelivery
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_transport_options={"visibility_timeout": BUILD_TIMEOUT + 300},
        result_expires=3600,
        task_default_queue=BUILD_QUEUE,
        task_routes={"unicloud.build.*": {"queue": BUILD_QUEUE}},
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
    return app


celery = make_celery()

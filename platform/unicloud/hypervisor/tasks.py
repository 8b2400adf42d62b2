"""Celery tasks of the host agent, consumed only from this host's queue `host.<name>`.

The scheduler sends them with `celery.send_task(name, args, queue=host_queue(host))`.
Both are idempotent: a redelivered message finds the instance already started or stopped.
"""

from __future__ import annotations

from unicloud.celery_app import celery


@celery.task(name="unicloud.host.start_instance")
def start_instance(instance_id: str) -> dict:
    from unicloud.hypervisor.agent import get_agent

    return get_agent().start_instance(instance_id)


@celery.task(name="unicloud.host.stop_instance")
def stop_instance(instance_id: str, grace: float = 10) -> dict:
    from unicloud.hypervisor.agent import get_agent

    return get_agent().stop_instance(instance_id, grace)

"""`python -m unicloud.hypervisor` -- the agent Procfile process.

It registers this host (`UNICLOUD_HOST_NAME`, capacity `UNICLOUD_HOST_CAPACITY_MB`), adopts VMs
that survived a restart, then becomes a Celery worker consuming only `host.<name>`. The pool is
threads (`UNICLOUD_AGENT_CONCURRENCY`, default 4): starting a VM is mostly waiting on QEMU and
stopping one is mostly waiting out the grace period, and threads share the agent's monitor state.
"""

from __future__ import annotations

import logging
import os

from unicloud.celery_app import celery, host_queue
from unicloud.hypervisor.agent import get_agent


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s agent %(levelname)s %(name)s: %(message)s")
    agent = get_agent()
    agent.boot()
    concurrency = os.environ.get("UNICLOUD_AGENT_CONCURRENCY", "4")
    celery.worker_main(["worker", "-Q", host_queue(agent.name), "-P", "threads", "-c", concurrency,
                        "-n", f"agent@{agent.name}", "--without-gossip", "--without-mingle",
                        "--loglevel", "INFO"])


if __name__ == "__main__":
    main()

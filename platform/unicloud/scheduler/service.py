"""The scheduler process: run reconciler passes forever, quickly while a router switch is pending."""

from __future__ import annotations

import os
import signal
import threading
import time
import traceback

from unicloud.config import Settings
from unicloud.scheduler.reconciler import WAKE_CHANNEL, Reconciler

INTERVAL = float(os.environ.get("UNICLOUD_RECONCILE_INTERVAL", "0.5"))


def run(settings: Settings | None = None, stop: threading.Event | None = None) -> None:
    stop = stop or threading.Event()
    rec = Reconciler(settings)
    pubsub = rec.r.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(WAKE_CHANNEL)
    print(f"scheduler: reconciling every {INTERVAL}s", flush=True)
    failures = 0
    while not stop.is_set():
        started = time.monotonic()
        try:
            rec.tick()
            failures = 0
        except Exception:  # a bad pass (DB busy, Redis restart) must not end the scheduler
            failures += 1
            traceback.print_exc()
            time.sleep(min(5.0, 0.5 * failures))
        wait = 0.05 if rec.pending_switch() else max(0.0, INTERVAL - (time.monotonic() - started))
        pubsub = _pause(rec, pubsub, wait)


def _pause(rec: Reconciler, pubsub, wait: float):
    """Sleep until the next pass, cut short by a wake-up message or a finished health check."""
    deadline = time.monotonic() + wait
    while True:
        if rec.checker.finished.is_set():
            rec.checker.finished.clear()
            return pubsub
        left = deadline - time.monotonic()
        if left <= 0:
            return pubsub
        try:
            if pubsub.get_message(timeout=min(0.05, left)):
                return pubsub
        except Exception:
            time.sleep(min(0.5, max(left, 0)))
            try:
                pubsub = rec.r.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(WAKE_CHANNEL)
            except Exception:
                pass
            return pubsub


def main() -> None:
    from unicloud.logs.drains import DrainForwarder

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    settings = Settings.from_env()
    # Log drains ride along in the scheduler: one always-running process per platform.
    DrainForwarder(settings).start()
    run(settings, stop)
    print("scheduler: stopped", flush=True)

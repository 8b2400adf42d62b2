"""The scheduler process: run reconciler passes forever, quickly while a router switch is pending.

A pass runs every INTERVAL seconds, and at once when something it waits for happens: a
`scheduler:wake` message (a new release, a formation change, a crashed VM), the router's
acknowledgement of a routing table, or the end of a health check. Those all set one event, so a
deploy never waits out a polling interval between its steps.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import traceback

from unicloud.config import Settings
from unicloud.router.table import APPLIED_CHANNEL
from unicloud.scheduler.reconciler import WAKE_CHANNEL, Reconciler

INTERVAL = float(os.environ.get("UNICLOUD_RECONCILE_INTERVAL", "0.5"))
# While the router has not confirmed a switch: its acknowledgement wakes the loop; this is the
# fallback re-check in case that message is lost (pub/sub is fire-and-forget).
SWITCH_RECHECK = 0.1


class WakeListener(threading.Thread):
    """Sets `event` for every message on the scheduler's wake-up channels; resubscribes after a
    Redis restart (and sets the event then too, since messages may have been missed)."""

    def __init__(self, r, event: threading.Event, stop: threading.Event,
                 channels: tuple[str, ...] = (WAKE_CHANNEL, APPLIED_CHANNEL)):
        super().__init__(daemon=True, name="scheduler-wake")
        self.r, self.event, self.stop, self.channels = r, event, stop, channels
        self.subscribed = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            pubsub = None
            try:
                pubsub = self.r.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(*self.channels)
                self.subscribed.set()
                while not self.stop.is_set():
                    if pubsub.get_message(timeout=1.0):
                        self.event.set()
            except Exception as exc:  # Redis restart: a pass will catch up with what we missed
                print(f"scheduler: wake-up channel error: {exc}", flush=True)
                self.event.set()
                self.stop.wait(0.5)
            finally:
                if pubsub is not None:
                    try:
                        pubsub.close()
                    except Exception:
                        pass


def run(settings: Settings | None = None, stop: threading.Event | None = None) -> None:
    stop = stop or threading.Event()
    wake = threading.Event()
    rec = Reconciler(settings, wake=wake)
    listener = WakeListener(rec.r, wake, stop)
    listener.start()
    listener.subscribed.wait(5)
    print(f"scheduler: reconciling every {INTERVAL}s and on wake-ups", flush=True)
    failures = 0
    while not stop.is_set():
        started = time.monotonic()
        wake.clear()  # before the pass: whatever happens during it triggers the next one
        try:
            rec.tick()
            failures = 0
        except Exception:  # a bad pass (DB busy, Redis restart) must not end the scheduler
            failures += 1
            traceback.print_exc()
            stop.wait(min(5.0, 0.5 * failures))
        wait = SWITCH_RECHECK if rec.pending_switch() else max(0.0, INTERVAL - (time.monotonic() - started))
        wake.wait(wait)


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

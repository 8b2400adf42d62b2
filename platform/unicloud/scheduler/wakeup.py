"""Waking the scheduler: publish on WAKE_CHANNEL when something it acts on changed, so the next
reconciler pass runs now instead of at its interval. Best effort: the interval still catches up.

Its own module so that the agent can wake the scheduler without importing the reconciler.
"""

from __future__ import annotations

WAKE_CHANNEL = "scheduler:wake"


def wake(r) -> None:
    """Ask the scheduler for a pass now (e.g. after creating a release or recording a crash)."""
    r.publish(WAKE_CHANNEL, "1")

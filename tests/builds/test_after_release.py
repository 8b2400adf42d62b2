"""Housekeeping after a successful build is best effort: it never raises into the build task, and
the scheduler is woken before the build root is unmounted or old images are collected (which run
at the lowest CPU priority while the new VM boots)."""

from __future__ import annotations

import os
import time

import unicloud.image.retention as retention
from unicloud.build.pipeline import BuildOutput
from unicloud.build.sandbox import Sandbox, mounts_under
from unicloud.build.tasks import _after_release
from unicloud.redis_client import get_redis
from unicloud.scheduler.reconciler import WAKE_CHANNEL

from .conftest import needs_root


@needs_root
def test_a_failing_collection_does_not_escape(settings, tmp_path, monkeypatch, capsys):
    lower = tmp_path / "stack"
    lower.mkdir()
    sandbox = Sandbox(lower, tmp_path / "work", "test-stack").open()
    output = BuildOutput(root=sandbox.root, manifest={}, buildpack="python", stack="test-stack", _sandbox=sandbox)
    seen = []

    def broken(_settings):
        seen.append(("collect", list(mounts_under(tmp_path / "work")), os.getpriority(os.PRIO_PROCESS, 0)))
        raise OSError("disk on fire")

    monkeypatch.setattr(retention, "collect_garbage", broken)
    priority = os.getpriority(os.PRIO_PROCESS, 0)
    pubsub = get_redis(settings).pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(WAKE_CHANNEL)
    try:
        _after_release(settings, output)  # must not raise: the build already has its release
        assert _next_message(pubsub) is not None  # the scheduler was woken
    finally:
        pubsub.close()
        sandbox.close()
    assert "OSError: disk on fire" in capsys.readouterr().out
    # The build root was unmounted before the collection ran, which ran at the lowest priority.
    assert seen == [("collect", [], 19)]
    assert os.getpriority(os.PRIO_PROCESS, 0) == priority
    assert mounts_under(tmp_path / "work") == []


def _next_message(pubsub, timeout: float = 5.0):
    """The next published message (get_message also returns None for the ignored subscribe reply)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = pubsub.get_message(timeout=0.5)
        if msg is not None:
            return msg
    return None

"""Housekeeping after a successful build is best effort: it never raises into the build task."""

from __future__ import annotations

import unicloud.image.retention as retention
from unicloud.build.tasks import _after_release


def test_a_failing_collection_does_not_escape(settings, monkeypatch, capsys):
    def broken(_settings):
        raise OSError("disk on fire")

    monkeypatch.setattr(retention, "collect_garbage", broken)
    _after_release(settings)  # must not raise: the build already has its release
    assert "OSError: disk on fire" in capsys.readouterr().out

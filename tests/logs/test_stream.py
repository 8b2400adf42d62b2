"""The per-app log stream: Heroku's line format, retention bound, filters, hostile VM output."""

from __future__ import annotations

import datetime as dt

import pytest
import redis

from unicloud import logs


@pytest.fixture
def r(redis_url):
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.delete(logs.stream_key("app1"))
    return client


def test_line_format_matches_heroku(r):
    ts = dt.datetime(2026, 12, 3, 12, 0, 0, 123456, tzinfo=dt.timezone.utc)
    logs.emit(r, "app1", "app", "web.1", "hello", ts=ts)
    logs.emit(r, "app1", "unicloud", "api", "Release v3 created by dev@example.com", ts=ts)
    lines = [logs.format_entry(f) for _id, f in logs.recent(r, "app1", 10)]
    assert lines == [
        "2026-12-03T12:00:00.123456+00:00 app[web.1]: hello",
        "2026-12-03T12:00:00.123456+00:00 unicloud[api]: Release v3 created by dev@example.com",
    ]


def test_retention_bound_holds(r):
    for i in range(250):
        logs.emit(r, "app1", "app", "web.1", f"line {i}", retention=100)
    assert r.xlen(logs.stream_key("app1")) == 100
    kept = logs.recent(r, "app1", 1000)
    assert kept[0][1]["line"] == "line 150" and kept[-1][1]["line"] == "line 249"


def test_filters_by_process_and_source(r):
    logs.emit(r, "app1", "app", "web.1", "one")
    logs.emit(r, "app1", "app", "web.2", "two")
    logs.emit(r, "app1", "router", "router", "GET / 200")
    assert [f["line"] for _i, f in logs.recent(r, "app1", 10, dyno="web.2")] == ["two"]
    assert [f["line"] for _i, f in logs.recent(r, "app1", 10, dyno="web")] == ["one", "two"]
    assert [f["line"] for _i, f in logs.recent(r, "app1", 10, source="router")] == ["GET / 200"]


def test_binary_and_huge_lines_are_made_safe(r):
    logs.emit(r, "app1", "app", "web.1", b"\x00\x1b[31mred\xff\xfe\x07")
    logs.emit(r, "app1", "app", "web.1", "x" * 100_000)
    logs.emit(r, "app1", "app", "web.1", "still fine")
    entries = [f["line"] for _i, f in logs.recent(r, "app1", 10)]
    assert "\x00" not in entries[0] and "\x1b" not in entries[0] and "red" in entries[0]
    assert len(entries[1]) <= logs.MAX_LINE_CHARS + 20 and entries[1].endswith("[truncated]")
    assert entries[2] == "still fine"


def test_follow_yields_new_lines(r):
    logs.emit(r, "app1", "app", "web.1", "old")
    gen = logs.follow(r, "app1", block_ms=200)
    logs.emit(r, "app1", "app", "web.1", "new")
    got = None
    for _ in range(10):
        entry_id, fields = next(gen)
        if fields:
            got = fields["line"]
            break
    assert got == "new"


def test_unknown_source_is_refused(r):
    with pytest.raises(ValueError):
        logs.emit(r, "app1", "kernel", "x", "nope")

"""Timestamps come back time-zone aware from SQLite, so they compare with utcnow() anywhere."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy.exc import StatementError

from unicloud.db.models import User, utcnow
from unicloud.db.session import session_scope


def test_timestamps_read_back_aware_utc(settings):
    with session_scope(settings) as s:
        s.add(User(email="tz@example.com"))
    with session_scope(settings) as s:
        created = s.query(User).filter_by(email="tz@example.com").one().created_at
    assert created.tzinfo is not None and created.utcoffset() == dt.timedelta(0)
    assert 0 <= (utcnow() - created).total_seconds() < 3600


def test_naive_timestamps_are_refused(settings):
    with pytest.raises(StatementError, match="naive datetime"):
        with session_scope(settings) as s:
            s.add(User(email="naive@example.com", created_at=dt.datetime(2026, 1, 1)))

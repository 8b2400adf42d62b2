"""Instances as `unicloud ps` shows them."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from unicloud.db.models import App, Instance

HIDDEN_STATES = {"stopped"}


def list_instances(session: Session, app: App, include_stopped: bool = False) -> list[Instance]:
    rows = session.scalars(
        select(Instance).where(Instance.app_id == app.id).order_by(Instance.process_type, Instance.index, Instance.started_at)
    ).all()
    return [i for i in rows if include_stopped or i.state not in HIDDEN_STATES]

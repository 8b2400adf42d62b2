"""Compare-and-set state changes on Instance rows.

The scheduler and the agents both write instance state; a plain read-modify-write could turn a
crash the agent just recorded back into "up". Every transition names the states it may leave.
"""

from __future__ import annotations

from typing import Iterable

from sqlalchemy import update
from sqlalchemy.orm import Session

from unicloud.db.models import Instance, utcnow

ACTIVE = ("starting", "up", "draining")  # a VM should exist for these
LIVE = ("starting", "up", "draining", "crashed")  # rows the scheduler still manages


def transition(session: Session, instance_id: str, from_states: Iterable[str], **values) -> bool:
    """Set `values` on the instance if its state is one of `from_states`; True if it changed."""
    values.setdefault("updated_at", utcnow())
    res = session.execute(
        update(Instance)
        .where(Instance.id == instance_id, Instance.state.in_(tuple(from_states)))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    inst = session.get(Instance, instance_id)
    if inst is not None:
        session.refresh(inst)
    return res.rowcount == 1

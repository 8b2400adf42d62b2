"""Scaling: the formation is the desired instance count per process type; the scheduler converges."""

from __future__ import annotations

from sqlalchemy.orm import Session

from unicloud.db.models import App
from unicloud.services import ServiceError
from unicloud.services.apps import validate_scale


def scale(session: Session, app: App, changes: dict) -> dict[str, int]:
    """Validate `{"web": 2}`-style changes against the current release and store the new formation."""
    if not isinstance(changes, dict):
        raise ServiceError("formation must be a JSON object such as {\"web\": 2}", 422)
    for ptype, qty in changes.items():
        # JSON true/false are ints to Python; a quantity must be a real number.
        if isinstance(qty, bool):
            raise ServiceError(f"{ptype}={qty}: quantity must be a whole number", 422)
    current = app.current_release
    validate_scale(app, (current.process_types if current else {}) or {}, changes)
    formation = dict(app.formation or {})
    formation.update({k: int(v) for k, v in changes.items()})
    app.formation = formation
    session.flush()
    return formation

"""Users; the first start of a platform creates the admin and hands out its token."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from unicloud.db.models import User
from unicloud.services.tokens import create_token


def ensure_admin(session: Session, token_path: Path, email: str = "admin@localhost") -> User:
    """Create the admin user and write its token (mode 0600) unless the token file exists."""
    admin = session.scalar(select(User).where(User.is_admin.is_(True)).order_by(User.id))
    if admin is None:
        admin = User(email=email, is_admin=True)
        session.add(admin)
        session.flush()
    if not token_path.exists():
        token = create_token(session, admin, "admin token written by unicloud up")
        token_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(token_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(token + "\n")
        os.chmod(token_path, 0o600)
    return admin


def get_or_create_user(session: Session, email: str) -> User:
    user = session.scalar(select(User).where(User.email == email))
    if user is None:
        user = User(email=email)
        session.add(user)
        session.flush()
    return user

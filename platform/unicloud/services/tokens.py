"""API tokens: random secrets whose SHA-256 alone is stored, so a leaked database leaks no tokens."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from unicloud.db.models import APIToken, User, utcnow

TOKEN_PREFIX = "uc_"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(session: Session, user: User, description: str = "") -> str:
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(APIToken(user_id=user.id, token_hash=hash_token(token), description=description))
    session.flush()
    return token


def user_for_token(session: Session, token: str | None) -> User | None:
    if not token:
        return None
    row = session.scalar(select(APIToken).where(APIToken.token_hash == hash_token(token.strip())))
    if row is None:
        return None
    row.last_used_at = utcnow()
    return row.user

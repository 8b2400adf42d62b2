"""SSH public keys: parsed and fingerprinted with `cryptography` so bad input is refused up front."""

from __future__ import annotations

import base64
import hashlib

from cryptography.hazmat.primitives.serialization import load_ssh_public_key
from sqlalchemy import select
from sqlalchemy.orm import Session

from unicloud.db.models import SSHKey, User
from unicloud.services import Conflict, NotFound, ServiceError

ALLOWED_TYPES = {"ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521"}


def fingerprint_of_blob(blob: bytes) -> str:
    """OpenSSH's SHA256 fingerprint format, as `ssh-keygen -lf` prints it."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def parse_public_key(text: str) -> tuple[str, bytes, str]:
    """Return (type, blob, comment) of an OpenSSH public key line, or raise a clear error."""
    parts = (text or "").strip().split()
    if len(parts) < 2:
        raise ServiceError("not an SSH public key: expected '<type> <base64> [comment]' (e.g. the contents of ~/.ssh/id_ed25519.pub)", 422)
    key_type, b64 = parts[0], parts[1]
    if key_type not in ALLOWED_TYPES:
        raise ServiceError(f"unsupported SSH key type {key_type!r}; use one of: {', '.join(sorted(ALLOWED_TYPES))}", 422)
    try:
        blob = base64.b64decode(b64, validate=True)
        load_ssh_public_key(f"{key_type} {b64}".encode())
    except Exception as exc:  # cryptography raises several types for malformed keys
        raise ServiceError(f"invalid SSH public key: {exc}", 422) from None
    return key_type, blob, " ".join(parts[2:])


def add_key(session: Session, user: User, text: str) -> SSHKey:
    key_type, blob, comment = parse_public_key(text)
    fp = fingerprint_of_blob(blob)
    existing = session.scalar(select(SSHKey).where(SSHKey.fingerprint == fp))
    if existing is not None:
        raise Conflict(f"SSH key {fp} is already registered")
    key = SSHKey(user_id=user.id, public_key=f"{key_type} {base64.b64encode(blob).decode()}",
                 key_type=key_type, comment=comment, fingerprint=fp)
    session.add(key)
    session.flush()
    return key


def remove_key(session: Session, user: User, ident: str) -> SSHKey:
    """Remove by fingerprint, comment or numeric id."""
    for key in user.keys:
        if ident in (key.fingerprint, key.comment, str(key.id)):
            session.delete(key)
            session.flush()
            return key
    raise NotFound(f"no SSH key matching {ident!r}; see `unicloud keys`")


def user_for_key_blob(session: Session, blob: bytes) -> User | None:
    key = session.scalar(select(SSHKey).where(SSHKey.fingerprint == fingerprint_of_blob(blob)))
    return key.user if key else None

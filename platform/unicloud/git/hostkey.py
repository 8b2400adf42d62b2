"""The SSH server's persistent Ed25519 host key (paramiko can load Ed25519 keys but not make them)."""

from __future__ import annotations

import os
from pathlib import Path

import paramiko
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat


def load_or_create_host_key(path: Path) -> paramiko.Ed25519Key:
    """Load the key at `path`, generating it (mode 0600, written atomically) on first start."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        pem = Ed25519PrivateKey.generate().private_bytes(Encoding.PEM, PrivateFormat.OpenSSH, NoEncryption())
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
        try:
            os.link(tmp, path)  # fails if another process created it meanwhile: keep theirs
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise PermissionError(f"SSH host key {path} has mode {mode:o}; it must be private (chmod 600 {path})")
    return paramiko.Ed25519Key.from_private_key_file(str(path))


def public_key_line(key: paramiko.PKey) -> str:
    """`ssh-ed25519 AAAA...`, for known_hosts."""
    return f"{key.get_name()} {key.get_base64()}"

"""Where the CLI finds the API: environment first, then ~/.config/unicloud/credentials.json."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_API_URL = "http://127.0.0.1:5000"


class CliError(Exception):
    """Shown to the user as one `error: <message>` line on stderr; exit status 1."""


@dataclass
class Credentials:
    api_url: str
    token: str


def credentials_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "unicloud" / "credentials.json"


def read_file() -> dict:
    path = credentials_path()
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CliError(f"cannot read {path}: {exc}; run `unicloud login` again") from None
    return data if isinstance(data, dict) else {}


def save(api_url: str, token: str) -> Path:
    """Write the file owner-only: the directory 0700, the file 0600 from its creation."""
    path = credentials_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"api_url": api_url, "token": token}, fh, indent=2)
        fh.write("\n")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return path


def clear() -> bool:
    path = credentials_path()
    if path.exists():
        path.unlink()
        return True
    return False


def default_api_url() -> str:
    return os.environ.get("UNICLOUD_API_URL") or read_file().get("api_url") or DEFAULT_API_URL


def resolve() -> Credentials:
    stored = read_file()
    url = os.environ.get("UNICLOUD_API_URL") or stored.get("api_url") or DEFAULT_API_URL
    token = os.environ.get("UNICLOUD_API_TOKEN") or stored.get("token")
    if not token:
        raise CliError("not logged in: run `unicloud login` or set UNICLOUD_API_URL and UNICLOUD_API_TOKEN")
    return Credentials(api_url=url.rstrip("/"), token=token)

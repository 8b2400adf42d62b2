"""Platform settings, read from the environment so every child process sees the same values."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "unicloud"


def _default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "unicloud"


@dataclass
class Settings:
    """Everything a platform process needs to find its peers and its state."""

    data_dir: Path = field(default_factory=_default_data_dir)
    cache_dir: Path = field(default_factory=_default_cache_dir)
    bind: str = "127.0.0.1"
    api_port: int = 5000
    ssh_port: int = 2222
    router_port: int = 8080
    domain: str = "localhost"
    redis_url: str | None = None
    database_url: str | None = None
    host_name: str = "local"

    @classmethod
    def from_env(cls) -> "Settings":
        env = os.environ
        s = cls()
        if env.get("UNICLOUD_DATA_DIR"):
            s.data_dir = Path(env["UNICLOUD_DATA_DIR"])
        if env.get("UNICLOUD_CACHE_DIR"):
            s.cache_dir = Path(env["UNICLOUD_CACHE_DIR"])
        s.bind = env.get("UNICLOUD_BIND", s.bind)
        s.api_port = int(env.get("UNICLOUD_API_PORT", s.api_port))
        s.ssh_port = int(env.get("UNICLOUD_SSH_PORT", s.ssh_port))
        s.router_port = int(env.get("UNICLOUD_ROUTER_PORT", s.router_port))
        s.domain = env.get("UNICLOUD_DOMAIN", s.domain)
        s.redis_url = env.get("REDIS_URL") or s.redis_url
        s.database_url = env.get("UNICLOUD_DATABASE_URL") or s.database_url
        s.host_name = env.get("UNICLOUD_HOST_NAME", s.host_name)
        return s

    def to_env(self) -> dict[str, str]:
        """The environment that makes `from_env()` in a child return these settings."""
        env = {
            "UNICLOUD_DATA_DIR": str(self.data_dir),
            "UNICLOUD_CACHE_DIR": str(self.cache_dir),
            "UNICLOUD_BIND": self.bind,
            "UNICLOUD_API_PORT": str(self.api_port),
            "UNICLOUD_SSH_PORT": str(self.ssh_port),
            "UNICLOUD_ROUTER_PORT": str(self.router_port),
            "UNICLOUD_DOMAIN": self.domain,
            "UNICLOUD_HOST_NAME": self.host_name,
        }
        if self.redis_url:
            env["REDIS_URL"] = self.redis_url
        if self.database_url:
            env["UNICLOUD_DATABASE_URL"] = self.database_url
        return env

    @property
    def sqlalchemy_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'unicloud.db'}"

    # Well-known locations inside the data dir (see docs/architecture.md).
    @property
    def repos_dir(self) -> Path:
        return self.data_dir / "repos"

    @property
    def images_dir(self) -> Path:
        return self.data_dir / "images"

    @property
    def builds_dir(self) -> Path:
        return self.data_dir / "builds"

    @property
    def app_cache_dir(self) -> Path:
        return self.data_dir / "cache"

    @property
    def vms_dir(self) -> Path:
        return self.data_dir / "vms"

    @property
    def router_dir(self) -> Path:
        return self.data_dir / "router"

    @property
    def host_key_path(self) -> Path:
        return self.data_dir / "ssh_host_ed25519_key"

    @property
    def app_url_template(self) -> str:
        return f"http://{{name}}.{self.domain}:{self.router_port}/"

    def app_url(self, name: str) -> str:
        return self.app_url_template.format(name=name)

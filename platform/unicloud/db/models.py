"""The platform's durable state. Releases and images are never mutated after they go live."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


class UTCDateTime(TypeDecorator):
    """Timestamps are stored in UTC and always read back time-zone aware: SQLite drops the zone,
    and comparing a naive value with `utcnow()` would raise. Same column type as DateTime(tz)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None and value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: use unicloud.db.models.utcnow()")
        return value

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return value


class Base(DeclarativeBase):
    type_annotation_map = {dt.datetime: UTCDateTime()}


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    keys: Mapped[list["SSHKey"]] = relationship(back_populates="user", cascade="all, delete-orphan")


class SSHKey(Base):
    __tablename__ = "ssh_keys"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    public_key: Mapped[str] = mapped_column(Text)
    key_type: Mapped[str] = mapped_column(String(64))
    comment: Mapped[str] = mapped_column(String(255), default="")
    fingerprint: Mapped[str] = mapped_column(String(80), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    user: Mapped[User] = relationship(back_populates="keys")


class APIToken(Base):
    """Only the SHA-256 of a token is stored; the token itself is shown once."""

    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(default=None)

    user: Mapped[User] = relationship()


class App(Base):
    __tablename__ = "apps"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(30), unique=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    config: Mapped[dict] = mapped_column(JSON, default=dict)
    formation: Mapped[dict] = mapped_column(JSON, default=lambda: {"web": 1})
    memory_mb: Mapped[int] = mapped_column(Integer, default=128)
    current_release_id: Mapped[int | None] = mapped_column(
        ForeignKey("releases.id", use_alter=True, name="fk_apps_current_release"), default=None
    )
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    owner: Mapped[User] = relationship(foreign_keys=[owner_id])
    members: Mapped[list["AppMember"]] = relationship(back_populates="app", cascade="all, delete-orphan")
    current_release: Mapped["Release | None"] = relationship(foreign_keys=[current_release_id], post_update=True)


class AppMember(Base):
    __tablename__ = "app_members"
    __table_args__ = (UniqueConstraint("app_id", "user_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    app_id: Mapped[int] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String(16), default="member")

    app: Mapped[App] = relationship(back_populates="members")
    user: Mapped[User] = relationship()


class Build(Base):
    __tablename__ = "builds"
    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("b"))
    app_id: Mapped[int] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    commit: Mapped[str] = mapped_column(String(40))
    ref: Mapped[str] = mapped_column(String(255), default="refs/heads/main")
    # pending -> running -> succeeded | failed
    status: Mapped[str] = mapped_column(String(16), default="pending")
    reason: Mapped[str | None] = mapped_column(Text, default=None)
    buildpack: Mapped[str | None] = mapped_column(String(64), default=None)
    stack: Mapped[str | None] = mapped_column(String(64), default=None)
    log: Mapped[str | None] = mapped_column(Text, default=None)
    image_id: Mapped[int | None] = mapped_column(ForeignKey("images.id"), default=None)
    release_id: Mapped[int | None] = mapped_column(
        ForeignKey("releases.id", use_alter=True, name="fk_builds_release"), default=None
    )
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    finished_at: Mapped[dt.datetime | None] = mapped_column(default=None)

    app: Mapped[App] = relationship()
    user: Mapped[User | None] = relationship()
    image: Mapped["Image | None"] = relationship(foreign_keys=[image_id])


class Image(Base):
    """A content-addressed VM image; the bytes live in the image store under `digest`."""

    __tablename__ = "images"
    __table_args__ = (UniqueConstraint("app_id", "digest"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    app_id: Mapped[int] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), index=True)
    digest: Mapped[str] = mapped_column(String(80))
    kernel_size: Mapped[int] = mapped_column(Integer, default=0)
    rootfs_size: Mapped[int] = mapped_column(Integer, default=0)
    total_size: Mapped[int] = mapped_column(Integer, default=0)
    manifest: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Release(Base):
    __tablename__ = "releases"
    __table_args__ = (UniqueConstraint("app_id", "version"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    app_id: Mapped[int] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    description: Mapped[str] = mapped_column(String(255))
    commit: Mapped[str | None] = mapped_column(String(40), default=None)
    build_id: Mapped[str | None] = mapped_column(ForeignKey("builds.id", ondelete="SET NULL"), default=None)
    image_id: Mapped[int | None] = mapped_column(ForeignKey("images.id"), default=None)
    config: Mapped[dict] = mapped_column(JSON, default=dict)
    process_types: Mapped[dict] = mapped_column(JSON, default=dict)
    # pending -> deploying -> succeeded | failed
    status: Mapped[str] = mapped_column(String(16), default="pending")
    failure_reason: Mapped[str | None] = mapped_column(Text, default=None)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(default=None)

    app: Mapped[App] = relationship(foreign_keys=[app_id])
    image: Mapped[Image | None] = relationship()
    created_by: Mapped[User | None] = relationship()


class Host(Base):
    __tablename__ = "hosts"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    queue: Mapped[str] = mapped_column(String(80))
    capacity_mb: Mapped[int] = mapped_column(Integer, default=4096)
    accel: Mapped[str] = mapped_column(String(8), default="tcg")
    last_heartbeat: Mapped[dt.datetime | None] = mapped_column(default=None)


class Instance(Base):
    __tablename__ = "instances"
    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("i"))
    app_id: Mapped[int] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), index=True)
    release_id: Mapped[int] = mapped_column(ForeignKey("releases.id", ondelete="CASCADE"))
    process_type: Mapped[str] = mapped_column(String(32), default="web")
    index: Mapped[int] = mapped_column(Integer, default=1)
    host_id: Mapped[int | None] = mapped_column(ForeignKey("hosts.id"), default=None)
    host_port: Mapped[int | None] = mapped_column(Integer, default=None)
    memory_mb: Mapped[int] = mapped_column(Integer, default=128)
    # starting -> up -> draining -> stopped ; crashed ; failed
    state: Mapped[str] = mapped_column(String(16), default="starting")
    exit_code: Mapped[int | None] = mapped_column(Integer, default=None)
    restarts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    started_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    app: Mapped[App] = relationship()
    release: Mapped[Release] = relationship()
    host: Mapped[Host | None] = relationship()


class LogDrain(Base):
    __tablename__ = "log_drains"
    __table_args__ = (UniqueConstraint("app_id", "url"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    app_id: Mapped[int] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(String(1024))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

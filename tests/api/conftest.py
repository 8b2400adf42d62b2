"""API tests run FastAPI's TestClient against a migrated temp SQLite DB and a real redis-server."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient

from unicloud.api import create_app
from unicloud.db.models import Image, User
from unicloud.db.session import session_scope
from unicloud.services import apps as app_service
from unicloud.services.tokens import create_token


@dataclass
class Api:
    client: TestClient
    token: str
    settings: object

    def headers(self, token: str | None = None) -> dict:
        return {"Authorization": f"Bearer {token or self.token}"}

    def get(self, path, headers: dict | None = None, **kw):
        return self.client.get(path, headers={**self.headers(), **(headers or {})}, **kw)

    def post(self, path, headers: dict | None = None, **kw):
        return self.client.post(path, headers={**self.headers(), **(headers or {})}, **kw)

    def patch(self, path, headers: dict | None = None, **kw):
        return self.client.patch(path, headers={**self.headers(), **(headers or {})}, **kw)

    def delete(self, path, headers: dict | None = None, **kw):
        return self.client.delete(path, headers={**self.headers(), **(headers or {})}, **kw)


def make_user(settings, email: str, admin: bool = False) -> str:
    with session_scope(settings) as s:
        user = User(email=email, is_admin=admin)
        s.add(user)
        s.flush()
        return create_token(s, user, "test")


@pytest.fixture
def api(settings) -> Api:
    from unicloud.redis_client import get_redis

    get_redis(settings).flushdb()  # log streams of earlier tests would leak into this one
    token = make_user(settings, "admin@localhost", admin=True)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield Api(client=client, token=token, settings=settings)


def deploy_release(settings, app_name: str, *, digest: str = "sha256:" + "ab" * 32, status: str = "succeeded",
                   config: dict | None = None, make_current: bool = True, stored: bool = True) -> int:
    """Stand in for build + scheduler: an image row and a release in a final state."""
    from unicloud.services import releases

    with session_scope(settings) as s:
        app = app_service.get_app(s, app_name)
        image = s.query(Image).filter_by(app_id=app.id, digest=digest).one_or_none()
        if image is None:
            image = Image(app_id=app.id, digest=digest, kernel_size=2_000_000, rootfs_size=4_000_000,
                          total_size=6_000_000, manifest={})
            s.add(image)
            s.flush()
        image_dir = settings.images_dir / digest.removeprefix("sha256:")
        if stored and not image_dir.exists():  # rollback checks the store; a placeholder will do
            image_dir.mkdir(parents=True)
            (image_dir / "manifest.json").write_text("{}")
        rel = releases.create_release(s, app, image=image, config=config or dict(app.config or {}),
                                      process_types={"web": "python app.py"}, description="Deploy abc1234",
                                      user=app.owner, commit="abc1234" + "0" * 33)
        rel.status = status
        if make_current and status == "succeeded":
            app.current_release_id = rel.id
        return rel.version


def finish_release(settings, app_name: str, version: int, status: str = "succeeded") -> None:
    """What the scheduler does at the end of a deploy."""
    from unicloud.services import releases

    with session_scope(settings) as s:
        app = app_service.get_app(s, app_name)
        rel = releases.get_release(s, app, version)
        rel.status = status
        if status == "succeeded":
            app.current_release_id = rel.id

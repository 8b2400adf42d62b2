"""Retention keeps the images of each app's last N releases (and anything live or pending) and
refuses a rollback whose image was collected."""

from __future__ import annotations

import os
import time

import pytest

from unicloud.db.models import App, Image, Release, User
from unicloud.db.session import session_scope
from unicloud.image.retention import collect_garbage, image_available
from unicloud.image.store import ImageStore
from unicloud.services import ServiceError
from unicloud.services.releases import rollback


def _fake_image_dir(store: ImageStore, n: int, age: float) -> str:
    digest = f"{n:064x}"
    d = store.root / digest
    d.mkdir()
    (d / "manifest.json").write_text("{}")
    old = time.time() - age
    os.utime(d, (old, old))
    return digest


def test_keeps_last_releases_and_live_images(settings):
    store = ImageStore(settings.images_dir)
    digests = [_fake_image_dir(store, n, age=7200) for n in range(1, 9)]
    young = _fake_image_dir(store, 99, age=0)  # stored by a build that has not recorded it yet
    with session_scope(settings) as s:
        user = User(email="ret@example.com")
        s.add(user)
        s.flush()
        app = App(name="keeper", owner_id=user.id, config={}, formation={"web": 1})
        s.add(app)
        s.flush()
        for v, digest in enumerate(digests, 1):
            img = Image(app_id=app.id, digest=f"sha256:{digest}")
            s.add(img)
            s.flush()
            rel = Release(app_id=app.id, version=v, description=f"v{v}", image_id=img.id, status="succeeded")
            s.add(rel)
            s.flush()
            if v == 2:
                app.current_release_id = rel.id  # rolled far back: v2 is live
    removed = collect_garbage(settings, keep_releases=3)
    assert sorted(removed) == sorted(digests[i] for i in (0, 2, 3, 4))
    assert store.exists(digests[1])  # live
    assert all(store.exists(d) for d in digests[5:])  # the last three releases
    assert store.exists(young)

    with session_scope(settings) as s:
        app = s.query(App).filter_by(name="keeper").one()
        user = s.query(User).filter_by(email="ret@example.com").one()
        with pytest.raises(ServiceError, match="v3 was garbage-collected"):
            rollback(s, app, user, 3, image_available=lambda image: image_available(settings, image))
        assert rollback(s, app, user, 7, image_available=lambda image: image_available(settings, image)).version == 9

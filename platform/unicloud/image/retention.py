"""Image retention: every app keeps the images of its last N releases (default 5) for instant
rollbacks; the store drops the rest. Releases themselves are history and are never deleted."""

from __future__ import annotations

import os

from sqlalchemy import select

from unicloud.config import Settings
from unicloud.db.models import App, Image, Release
from unicloud.db.session import session_scope
from unicloud.image.store import ImageStore, normalise_digest

KEEP_RELEASES = int(os.environ.get("UNICLOUD_KEEP_RELEASES", "5"))
# An image stored by a build that has not recorded it yet must survive a concurrent collection.
MIN_AGE_SECONDS = 3600


def digests_to_keep(settings: Settings, keep_releases: int = KEEP_RELEASES) -> set[str]:
    keep: set[str] = set()
    with session_scope(settings) as s:
        for app in s.scalars(select(App)):
            rows = s.execute(
                select(Image.digest).join(Release, Release.image_id == Image.id)
                .where(Release.app_id == app.id).order_by(Release.version.desc()).limit(keep_releases)
            ).scalars()
            keep.update(rows)
            # Whatever is live or about to be, however old, stays.
            live = s.execute(
                select(Image.digest).join(Release, Release.image_id == Image.id)
                .where(Release.app_id == app.id,
                       (Release.status.in_(("pending", "deploying"))) | (Release.id == app.current_release_id))
            ).scalars()
            keep.update(live)
    return {normalise_digest(d) for d in keep}


def collect_garbage(settings: Settings, *, keep_releases: int = KEEP_RELEASES,
                    min_age: float = MIN_AGE_SECONDS) -> list[str]:
    return ImageStore(settings.images_dir).gc(digests_to_keep(settings, keep_releases), min_age=min_age)


def image_available(settings: Settings, image: Image | None) -> bool:
    return image is not None and ImageStore(settings.images_dir).exists(image.digest)

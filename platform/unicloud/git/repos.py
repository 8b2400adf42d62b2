"""Per-app bare repositories under `settings.repos_dir`, created with `main` as HEAD."""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

from dulwich.objects import ZERO_SHA
from dulwich.refs import RefsContainer
from dulwich.repo import Repo

from unicloud.config import Settings
from unicloud.services.names import validate_app_name

DEFAULT_BRANCH = b"main"
DEPLOY_REFS = (b"refs/heads/main", b"refs/heads/master")

_create_lock = threading.Lock()


def repo_path(settings: Settings, app_name: str) -> Path:
    validate_app_name(app_name)  # never let a name escape repos_dir
    return settings.repos_dir / f"{app_name}.git"


def ensure_repo(settings: Settings, app_name: str) -> Path:
    """Return the app's bare repo, creating it (HEAD -> refs/heads/main) on first use.

    Created in a temporary directory and renamed into place, so a concurrent first push (possibly
    from another process) never sees a half-initialised repository.
    """
    path = repo_path(settings, app_name)
    if (path / "HEAD").exists():
        return path
    with _create_lock:
        if (path / "HEAD").exists():
            return path
        settings.repos_dir.mkdir(parents=True, exist_ok=True)
        tmp = settings.repos_dir / f".{app_name}.git.tmp-{os.getpid()}-{threading.get_ident()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        Repo.init_bare(str(tmp), default_branch=DEFAULT_BRANCH).close()
        try:
            os.rename(tmp, path)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)  # another process won the race
            if not (path / "HEAD").exists():
                raise
    return path


def remove_repo(settings: Settings, app_name: str) -> bool:
    """Delete the app's repository (on app destroy). Returns whether there was one."""
    path = repo_path(settings, app_name)
    if not path.exists():
        return False
    shutil.rmtree(path)
    return True


def read_ref(path: Path, ref: bytes) -> bytes:
    """The sha a ref points at, or the zero sha if it does not exist."""
    with Repo(str(path)) as repo:
        return repo.refs.as_dict().get(ref, ZERO_SHA)


def cas_ref(refs: RefsContainer, ref: bytes, old: bytes, new: bytes, message: bytes = b"push") -> bool:
    """Atomically move `ref` from `old` to `new` (zero sha = absent). False if it had moved."""
    if new == ZERO_SHA:
        return refs.remove_if_equals(ref, None if old == ZERO_SHA else old, message=message)
    if old == ZERO_SHA:
        return refs.add_if_new(ref, new, message=message)
    return refs.set_if_equals(ref, old, new, message=message)


def compare_and_set_ref(path: Path, ref: bytes, old: bytes, new: bytes, message: bytes = b"push") -> bool:
    """`cas_ref` on the repository at `path`."""
    with Repo(str(path)) as repo:
        return cas_ref(repo.refs, ref, old, new, message)


def sweep_stale_temp_packs(path: Path, max_age: float = 3600.0) -> int:
    """Delete `objects/tmp_pack_*` left behind by refused or interrupted pushes.

    dulwich writes an incoming pack to such a temp file and leaves it when the pack turns out to
    be broken. Only files idle for `max_age` are removed, so a push in progress (in this or
    another process) is never disturbed.
    """
    removed = 0
    now = time.time()
    for tmp in (path / "objects").glob("tmp_pack_*"):
        try:
            if now - tmp.stat().st_mtime > max_age:
                tmp.unlink()
                removed += 1
        except FileNotFoundError:
            continue
    return removed

"""Who may push to or fetch from which app's repository, shared by the SSH and HTTP front ends."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from dulwich.repo import Repo
from dulwich.server import Backend, UploadPackHandler

from unicloud.config import Settings
from unicloud.db.models import User
from unicloud.db.session import session_scope
from unicloud.git.deploy import DeployResult, deploy_push
from unicloud.git.receive import DeployingReceivePackHandler
from unicloud.git.repos import ensure_repo
from unicloud.services import NotFound
from unicloud.services.apps import get_app, is_member

_REPO_ARG = re.compile(r"^/?(?P<app>[a-z][a-z0-9-]{1,29})(?:\.git)?/?$")

RECEIVE_PACK = "git-receive-pack"
UPLOAD_PACK = "git-upload-pack"
SERVICES = (RECEIVE_PACK, UPLOAD_PACK)


class AccessDenied(Exception):
    """Shown to the client as is; the same text for unknown apps and non-members."""


def no_access_message(app: str) -> str:
    return f"app '{app}' not found, or you are not a member of it"


def app_from_repo_arg(arg: str) -> str:
    """`app.git`, `/app.git` (or without `.git`) -> `app`; anything else is refused."""
    m = _REPO_ARG.match(arg or "")
    if not m or m.group("app").endswith("-"):
        raise AccessDenied(f"invalid repository {arg!r}: use <app>.git, e.g. git@host:myapp.git")
    return m.group("app")


def authorize(settings: Settings, user_id: int, app: str) -> None:
    """Raise AccessDenied unless the user is a member (or admin) of an existing app."""
    with session_scope(settings) as s:
        user = s.get(User, user_id)
        try:
            app_row = get_app(s, app)
        except NotFound:
            raise AccessDenied(no_access_message(app)) from None
        if user is None or not is_member(app_row, user):
            raise AccessDenied(no_access_message(app))


@dataclass
class AppRepoBackend(Backend):
    """A dulwich backend that serves exactly one app's repository, whatever path is asked for.

    The path was already validated and authorized by the front end; repositories opened here are
    closed by `close()` so pack file handles do not pile up in the long-running server.
    """

    path: Path
    opened: list[Repo] = field(default_factory=list)

    def open_repository(self, _path):
        repo = Repo(str(self.path))
        self.opened.append(repo)
        return repo

    def close(self) -> None:
        for repo in self.opened:
            repo.close()
        self.opened.clear()


def handlers_for(settings: Settings, app: str, user_id: int, *,
                 deploy: Callable[..., DeployResult] = deploy_push,
                 max_push_bytes: int | None = None) -> tuple[AppRepoBackend, dict[bytes, Callable]]:
    """The backend and dulwich handler table for one authorized request (creates the repo on demand)."""
    backend = AppRepoBackend(ensure_repo(settings, app))
    receive = DeployingReceivePackHandler.factory(settings=settings, app=app, user_id=user_id,
                                                  deploy=deploy, max_push_bytes=max_push_bytes)
    return backend, {RECEIVE_PACK.encode(): receive, UPLOAD_PACK.encode(): UploadPackHandler}

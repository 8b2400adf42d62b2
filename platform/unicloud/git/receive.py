"""dulwich receive-pack with unicloud's rules: verified packs, a size cap, deploy-before-ref-move.

dulwich 1.2.21 is pinned in pyproject because this module relies on private parts of
`dulwich.server.ReceivePackHandler`:
  - `_apply_pack(refs)` (overridden): called by `handle()` after the ref commands were read; it
    must read the pack from `self.proto` and yield `(b"unpack", status)` then `(ref, status)`
    per command, which `handle()` passes to `_report_status` (b"ok" or a one-line reason);
  - `self.proto` (`write_sideband`), `self.repo`, `has_capability()`, and the capability list
    returned by `capabilities()`.
dulwich's own pre-receive/update hooks are not used: pre-receive runs before the pack is read, and
its ref update ignores `set_if_equals` returning False (two racing pushes both "succeed").
"""

from __future__ import annotations

import logging
import os
import socket
import zlib
from functools import partial
from pathlib import Path
from typing import Callable

from dulwich.errors import ApplyDeltaError, ChecksumMismatch, ObjectFormatException
from dulwich.object_store import PackInputTooLarge
from dulwich.objects import ZERO_SHA
from dulwich.protocol import CAPABILITY_ATOMIC, CAPABILITY_SIDE_BAND_64K, SIDE_BAND_CHANNEL_PROGRESS
from dulwich.refs import check_ref_format
from dulwich.server import ReceivePackHandler

from unicloud.config import Settings
from unicloud.git.connectivity import BrokenPush, check_connected
from unicloud.git.deploy import DeployResult, deploy_push
from unicloud.git.repos import DEPLOY_REFS, cas_ref, sweep_stale_temp_packs

log = logging.getLogger(__name__)

DEFAULT_MAX_PUSH_BYTES = 500 * 1024 * 1024  # Heroku's slug limit


def max_push_bytes_from_env() -> int:
    raw = os.environ.get("UNICLOUD_MAX_PUSH_BYTES", "")
    if not raw:
        return DEFAULT_MAX_PUSH_BYTES
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"UNICLOUD_MAX_PUSH_BYTES must be a whole number of bytes, got {raw!r}") from None
    if value <= 0:
        raise ValueError(f"UNICLOUD_MAX_PUSH_BYTES must be positive, got {value}")
    return value


def _human(n: int) -> str:
    return f"{n / (1024 * 1024):.0f} MB" if n >= 1024 * 1024 else f"{n} bytes"


# What dulwich itself treats as a broken pack stream (see ReceivePackHandler._apply_pack).
_PACK_ERRORS = (IOError, OSError, ChecksumMismatch, ApplyDeltaError, AssertionError, socket.error,
                zlib.error, ObjectFormatException, ValueError)

Deploy = Callable[..., DeployResult]


class DeployingReceivePackHandler(ReceivePackHandler):
    """Receive-pack for one app, on behalf of one authenticated member."""

    def __init__(self, backend, args, proto, stateless_rpc=False, advertise_refs=False, *,
                 settings: Settings, app: str, user_id: int, deploy: Deploy = deploy_push,
                 max_push_bytes: int | None = None):
        super().__init__(backend, args, proto, stateless_rpc=stateless_rpc, advertise_refs=advertise_refs)
        self.settings = settings
        self.app = app
        self.user_id = user_id
        self.deploy = deploy
        self.max_push_bytes = max_push_bytes or max_push_bytes_from_env()
        self.rejected = False  # any ref refused: lets the SSH server exit non-zero

    @classmethod
    def factory(cls, **kwargs) -> Callable[..., "DeployingReceivePackHandler"]:
        """A constructor with dulwich's handler signature, bound to one app and user."""
        return partial(cls, **kwargs)

    def capabilities(self):
        # Atomic multi-ref pushes cannot be honoured once a deploy has happened; do not offer them.
        return [c for c in super().capabilities() if c != CAPABILITY_ATOMIC]

    def say(self, line: str) -> None:
        """One `remote:` line, sent immediately (also when git asked for quiet)."""
        if self._client_capabilities is not None and self.has_capability(CAPABILITY_SIDE_BAND_64K):
            self.proto.write_sideband(SIDE_BAND_CHANNEL_PROGRESS, line.encode("utf-8", "replace") + b"\n")

    def _apply_pack(self, refs):
        if any(new != ZERO_SHA for _old, new, _ref in refs):
            failure = self._receive_pack()
            if failure:
                self.rejected = True
                self.say(f"error: {failure}")
                yield (b"unpack", failure.encode())
                for _old, _new, ref in refs:
                    yield (ref, failure.encode())
                return
        yield (b"unpack", b"ok")
        for old, new, ref in refs:
            status = self._update_ref(ref, old, new)
            if status != b"ok":
                self.rejected = True
            yield (ref, status)

    def _receive_pack(self) -> str | None:
        """Read the pack into the object store; a one-line error if it is refused."""
        sweep_stale_temp_packs(Path(self.repo.path))
        try:
            self.repo.object_store.add_thin_pack(
                self.proto.read, getattr(self.proto, "recv", None), max_input_size=self.max_push_bytes)
        except PackInputTooLarge:
            return (f"push too large: the pack exceeds the {_human(self.max_push_bytes)} limit "
                    "(UNICLOUD_MAX_PUSH_BYTES); remove large files from the history")
        except _PACK_ERRORS as exc:
            detail = " ".join(str(exc).split()) or type(exc).__name__
            log.warning("push to %s: bad pack: %s", self.app, detail)
            return f"invalid pack: {detail}"
        return None

    def _update_ref(self, ref: bytes, old: bytes, new: bytes) -> bytes:
        name = ref.decode("utf-8", "replace")
        short = name.removeprefix("refs/heads/")
        if not check_ref_format(ref) or not ref.startswith(b"refs/"):
            return b"funny refname"
        if new != ZERO_SHA:
            try:
                kind = check_connected(self.repo, new)
            except BrokenPush as exc:
                return str(exc).encode()
        if ref in DEPLOY_REFS:
            if new == ZERO_SHA:
                return f"deleting {short} is not allowed: it is the deployed branch".encode()
            if kind != "commit":
                return f"{short} must point at a commit, not a {kind}".encode()
            try:
                result = self.deploy(self.settings, app=self.app, user_id=self.user_id, ref=name,
                                     old=old.decode(), new=new.decode(), out=self.say)
            except Exception:  # noqa: BLE001 - the pusher gets a reason instead of a hang-up
                log.exception("push to %s: deploy crashed", self.app)
                return b"deploy failed: internal error on the server (see the git server log); branch not moved"
            if not result.ok:
                return result.reason.replace("\n", " ").encode("utf-8", "replace") or b"deploy failed"
            return b"ok"
        if not cas_ref(self.repo.refs, ref, old, new):
            return b"non-fast-forward: the ref moved while you pushed; fetch and push again"
        if new == ZERO_SHA:
            self.say(f"Deleted '{short}'.")
        elif ref.startswith(b"refs/heads/"):
            self.say(f"Pushed to branch '{short}'; only main or master deploys.")
        else:
            self.say(f"Stored {name}; only main or master deploys.")
        return b"ok"

"""Health checks that decide whether an instance may receive traffic.

Default (no checks declared): the port accepts a connection and `GET /` answers with a status
below 500, retried until a deadline (the guest may still be booting: under TCG a boot takes
seconds, and QEMU's user-mode network accepts connections before the guest listens).

Declared checks come from the image manifest, which the image builder copies from the app:
- `app.json` `healthchecks.web` (Dokku's format): entries with `path`, optional `content`,
  `timeout`, `initialDelay`; only `type` "startup" (or no type) is used here;
- a Dokku-style `CHECKS` file: `WAIT=`/`TIMEOUT=`/`ATTEMPTS=` lines and `/path [expected content]`.
"""

from __future__ import annotations

import functools
import http.client
import json
import os
import queue
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from unicloud.image import cpio
from unicloud.image.compression import CompressionError, read_rootfs_bytes
from unicloud.image.layers import read_layer
from unicloud.image.store import ROOTFS_FILE

DEFAULT_DEADLINE = float(os.environ.get("UNICLOUD_HEALTH_TIMEOUT", "60"))
ATTEMPT_TIMEOUT = 5.0
RETRY_EVERY = 0.1  # once the guest is reachable: refused/reset connections cost nothing
BOOT_RETRY_EVERY = 0.25  # while attempts hang on a guest whose network is not up yet
WRONG_RETRY_EVERY = 1.0  # after the app answered wrongly
MAX_IN_FLIGHT = 32  # hanging attempts kept open at once (see run_until_deadline)
CANCEL_POLL = 0.1  # how soon a cancelled check notices


class HealthSpecError(ValueError):
    """A declared health check that cannot be run as written."""


@dataclass(frozen=True)
class Check:
    path: str = "/"
    content: str | None = None  # must appear in the body when set
    timeout: float = ATTEMPT_TIMEOUT

    def describe(self) -> str:
        return f"GET {self.path}" + (f" containing {self.content!r}" if self.content else "")


@dataclass(frozen=True)
class HealthSpec:
    checks: tuple[Check, ...] = (Check(),)
    deadline: float = DEFAULT_DEADLINE  # seconds from boot
    initial_delay: float = 0.0
    source: str = "default"
    # Wrong answers (the app responded, but with >= 500 or without the content) allowed before
    # giving up early; connection failures only count against the deadline (the VM may be booting).
    attempts: int | None = None


def _check_path(path) -> str:
    if not isinstance(path, str) or not path.startswith("/") or any(c.isspace() for c in path):
        raise HealthSpecError(f"health check path must start with '/' and contain no spaces: {path!r}")
    return path


def parse_checks_file(text: str) -> HealthSpec:
    """Dokku's CHECKS file: settings lines, then `/path [content]` lines; `#` comments."""
    wait, timeout, attempts, checks = 0.0, ATTEMPT_TIMEOUT, None, []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if sep and key in ("WAIT", "TIMEOUT", "ATTEMPTS"):
            try:
                num = float(value)
            except ValueError:
                raise HealthSpecError(f"CHECKS: {key} must be a number, got {value!r}") from None
            if key == "WAIT":
                wait = num
            elif key == "TIMEOUT":
                timeout = num
            else:
                attempts = num
            continue
        if not line.startswith("/"):
            if line.startswith("//"):
                continue
            raise HealthSpecError(f"CHECKS: cannot parse line {raw!r} (expected '/path [content]')")
        path, _, content = line.partition(" ")
        checks.append(Check(_check_path(path), content.strip() or None, timeout))
    if not checks:
        return HealthSpec(initial_delay=wait, source="CHECKS")
    return HealthSpec(tuple(checks), DEFAULT_DEADLINE, wait, "CHECKS", int(attempts) if attempts else None)


def parse_app_json(healthchecks) -> HealthSpec | None:
    entries = healthchecks.get("web") if isinstance(healthchecks, dict) else None
    if entries is None:
        return None
    if not isinstance(entries, list):
        raise HealthSpecError("app.json healthchecks.web must be a list of checks")
    checks, delay, attempts = [], 0.0, None
    for entry in entries:
        if not isinstance(entry, dict):
            raise HealthSpecError("app.json healthchecks.web entries must be objects")
        if entry.get("type", "startup") != "startup":
            continue
        if "command" in entry:
            raise HealthSpecError("app.json healthchecks: 'command' checks are not supported (images have no shell)")
        timeout = float(entry.get("timeout", ATTEMPT_TIMEOUT))
        checks.append(Check(_check_path(entry.get("path", "/")), entry.get("content"), timeout))
        delay = max(delay, float(entry.get("initialDelay", 0)))
        if "attempts" in entry:
            attempts = max(attempts or 0, int(entry["attempts"]))
    if not checks:
        return None
    return HealthSpec(tuple(checks), DEFAULT_DEADLINE, delay, "app.json", attempts)


def spec_from_manifest(manifest: dict | None, files: dict[str, bytes] | None = None) -> HealthSpec:
    """Checks declared in the image manifest, else in the app's `app.json` / `CHECKS` files."""
    manifest = manifest or {}
    files = files or {}
    app_json = manifest.get("app_json")
    if app_json is None and "app.json" in files:
        try:
            app_json = json.loads(files["app.json"])
        except ValueError as exc:
            raise HealthSpecError(f"app.json is not valid JSON: {exc}") from None
    app_json = app_json if isinstance(app_json, dict) else {}
    healthchecks = manifest.get("healthchecks") or app_json.get("healthchecks")
    if healthchecks:
        spec = parse_app_json(healthchecks)
        if spec:
            return spec
    checks = manifest.get("checks")
    if checks is None and "CHECKS" in files:
        checks = files["CHECKS"].decode("utf-8", errors="replace")
    if isinstance(checks, str):
        return parse_checks_file(checks)
    return HealthSpec()


@functools.lru_cache(maxsize=64)
def declared_files(image_dir: str, workdir: str = "/app") -> dict[str, bytes]:
    """`app.json` and `CHECKS` from the app directory inside an image's rootfs (images never
    change, so this is read once per image). Empty if the image is not on this machine."""
    rootfs = Path(image_dir) / ROOTFS_FILE
    if not rootfs.is_file():
        return {}
    # `app.json` and `CHECKS` sit at the top of the app directory, which is always in the app
    # layer: decompressing only it saves ~0.4 s of CPU while the new VM boots
    try:
        data = read_layer(Path(image_dir), "app")
        if data is None:
            data = read_rootfs_bytes(rootfs)
    except CompressionError:
        return {}
    base = workdir.strip("/")
    wanted = {f"{base}/app.json": "app.json", f"{base}/CHECKS": "CHECKS"}
    found = {}
    for entry in cpio.iter_newc(data):
        name = wanted.get(entry.path.lstrip("./"))
        if name and entry.is_file:
            found[name] = entry.data
    return found


def probe(host: str, port: int, check: Check) -> tuple[bool, bool, str]:
    """One attempt: (passed, the app answered at all, what happened)."""
    return _probe(host, port, check)[:3]


def _probe(host: str, port: int, check: Check) -> tuple[bool, bool, str, bool]:
    """`probe`, plus whether the connection reached whoever listens behind the port.

    Under QEMU's user-mode network a refused connection means QEMU is not listening yet, and a
    timeout may mean the guest's network is not up; an answer, a reset or an early close come
    from the guest itself."""
    conn = http.client.HTTPConnection(host, port, timeout=check.timeout)
    try:
        conn.request("GET", check.path, headers={"User-Agent": "unicloud-healthcheck", "Connection": "close"})
        resp = conn.getresponse()
        body = resp.read(64 * 1024).decode("utf-8", errors="replace")
    except (OSError, http.client.HTTPException) as exc:
        detail = f"{check.describe()}: {type(exc).__name__}: {exc}".rstrip(": ")
        reached = isinstance(exc, (ConnectionResetError, BrokenPipeError, http.client.HTTPException))
        return False, False, detail, reached
    finally:
        conn.close()
    snippet = body.strip().replace("\n", " ")[:200]
    if resp.status >= 500:
        return False, True, f"{check.describe()}: HTTP {resp.status}: {snippet}", True
    if check.content is not None and check.content not in body:
        return False, True, f"{check.describe()}: HTTP {resp.status}, expected content not found in: {snippet!r}", True
    return True, True, f"{check.describe()}: HTTP {resp.status}", True


@dataclass
class Result:
    ok: bool
    detail: str
    elapsed: float
    attempts: int


@dataclass
class _Attempt:
    started: float
    results: list[tuple[bool, bool, str, bool]]

    @property
    def reached(self) -> bool:
        """Some check got through to the guest (answered, reset or closed)."""
        return any(reached for _, _, _, reached in self.results)


def _attempt(started: float, host: str, port: int, checks: tuple[Check, ...], out: queue.SimpleQueue) -> None:
    out.put(_Attempt(started, [_probe(host, port, c) for c in checks]))


def run_until_deadline(host: str, port: int, spec: HealthSpec, started: float, cancel: threading.Event) -> Result:
    """Retry every check until all pass once or the deadline (counted from `started`) passes.

    QEMU's user-mode network accepts a connection before the guest's network is up and then
    holds it, unanswered, until the attempt times out. Waiting for such an attempt would notice
    an app that started listening meanwhile only `timeout` seconds later, so until some attempt
    has reached the guest (answered, reset or closed; a refusal only means QEMU is not listening
    yet), a new attempt starts every BOOT_RETRY_EVERY seconds beside the hanging ones. After that attempts run one at a time,
    RETRY_EVERY apart, so an app that is slow to answer is not sent a pile of requests. Every
    attempt keeps its full timeout; the first complete pass wins.
    """
    deadline = started + spec.deadline
    if spec.initial_delay:
        cancel.wait(max(0.0, started + spec.initial_delay - time.monotonic()))
    done: queue.SimpleQueue = queue.SimpleQueue()
    in_flight: list[float] = []  # start times of the attempts still running
    reached_at: float | None = None  # start of the latest attempt that got through to the guest
    attempts = wrong = 0
    detail, why = "no attempt made", None
    next_at = time.monotonic()
    while not cancel.is_set():
        now = time.monotonic()
        if reached_at is None:
            may_start = len(in_flight) < MAX_IN_FLIGHT
        else:  # the guest is reachable: an attempt started since then is with the app itself
            may_start = not any(t >= reached_at for t in in_flight)
        may_start = may_start and (attempts == 0 or now < deadline)
        if may_start and now >= next_at:
            attempts += 1
            in_flight.append(now)
            threading.Thread(target=_attempt, args=(now, host, port, spec.checks, done), daemon=True,
                             name=f"health-{port}-{attempts}").start()
            next_at = now + (BOOT_RETRY_EVERY if reached_at is None else RETRY_EVERY)
            continue
        if not in_flight and now >= deadline:
            break
        wait = next_at - now if may_start else CANCEL_POLL
        try:
            att = done.get(timeout=min(max(wait, 0.001), CANCEL_POLL))
        except queue.Empty:
            continue
        in_flight.remove(att.started)
        failed = [(answered, d) for ok, answered, d, _ in att.results if not ok]
        if not failed:
            return Result(True, "; ".join(d for _, _, d, _ in att.results), time.monotonic() - started, attempts)
        detail = failed[0][1]
        if att.reached:
            reached_at = max(reached_at or att.started, att.started)
            next_at = min(next_at, time.monotonic() + RETRY_EVERY)
        if any(answered for answered, _ in failed):
            wrong += 1
            # The app is up and answers wrongly: give it a moment instead of hammering it.
            next_at = max(next_at, time.monotonic() + WRONG_RETRY_EVERY)
            if spec.attempts is not None and wrong >= spec.attempts:
                why = f"{wrong} failed attempts ({spec.source})"
                break
    why = why or ("cancelled" if cancel.is_set() else f"no success within {spec.deadline:.0f}s ({attempts} attempts)")
    return Result(False, f"{why}; last: {detail}", time.monotonic() - started, attempts)


@dataclass
class _Running:
    future: Future
    cancel: threading.Event = field(default_factory=threading.Event)


class HealthChecker:
    """Runs checks in threads so one slow boot never stalls the reconciler loop."""

    def __init__(self, workers: int = 16, finished: threading.Event | None = None):
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="health")
        self.running: dict[str, _Running] = {}
        # Set when any check ends, so the loop reacts at once instead of at its next pass; the
        # scheduler shares it with its other wake-ups.
        self.finished = finished or threading.Event()

    def ensure(self, key: str, host: str, port: int, spec: HealthSpec, started: float) -> None:
        if key not in self.running:
            cancel = threading.Event()
            fut = self.pool.submit(run_until_deadline, host, port, spec, started, cancel)
            fut.add_done_callback(lambda _f: self.finished.set())
            self.running[key] = _Running(fut, cancel)

    def result(self, key: str) -> Result | None:
        run = self.running.get(key)
        if run is None or not run.future.done():
            return None
        return run.future.result()

    def forget(self, key: str) -> None:
        run = self.running.pop(key, None)
        if run is not None:
            run.cancel.set()

    def keys(self) -> list[str]:
        return list(self.running)

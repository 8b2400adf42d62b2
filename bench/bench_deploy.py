"""Push-to-live, rollback and failed requests during both, on a real private `unicloud up`
driven by `git push` over SSH and the CLI, beside the floor for each: the same app updated
by `git push file://` and a plain restart of a native process.

Sequence on the platform (one round each; a deploy takes minutes under TCG):
  1. cold push of a new app (empty build cache, empty image caches: no compressed layer, module
     parse, bytecode or unpacked rootfs from earlier builds) → time until the router serves it;
  2. app-only change (new greeting) pushed under load → time to live, failed requests;
  3. rollback to v1 while v1's old instances are still warm, under load;
  4. after the warm window has passed, rollback to v2 (a boot of the stored image), under load.
The warm window is shortened to WARM_WINDOW seconds for this platform so step 4 fits the budget.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import traceback
from pathlib import Path

from bench.core import Result, failed, not_built
from bench.load import LoadLoop
from bench.measure import Proc, free_port, wait_for_200
from bench.unicloud_image import APPS

APP_SOURCE = APPS / "python-hello"
NATIVE_PYTHON = "/usr/bin/python3"
APP = "benchhello"
WARM_WINDOW = 30
LIVE_TIMEOUT = 900.0
GREETING_V1 = "Hello from python-hello!"
GREETING_V2 = "Howdy from python-hello!"

M_COLD = "push to live, new app (cold)"
M_CHANGE = "push to live, app-only change"
M_RB_WARM = "rollback to live (warm)"
M_RB_COLD = "rollback to live (cold)"
M_FAIL_DEPLOY = "failed requests during deploy"
M_FAIL_RB_WARM = "failed requests during warm rollback"
M_FAIL_RB_COLD = "failed requests during cold rollback"
B_PUSH = "git push file:// + native restart"
B_RESTART = "native restart (stop, start old checkout)"
B_FAIL = "native stop-and-start under the same load"


def log(msg: str) -> None:
    print(f"   [deploy] {msg}", flush=True)


def run(quick: bool) -> list[Result]:
    root = Path(tempfile.mkdtemp(prefix="bench-deploy-", dir="/tmp"))
    try:
        base = _native_baselines(root / "native")
        log(f"native: {base}")
        try:
            uni = _platform_side(root / "platform")
        except Exception as e:
            traceback.print_exc()
            uni = {"error": e}
        return _results(base, uni)
    finally:
        shutil.rmtree(root, ignore_errors=True)


# --- the floor: git push file:// and a native process -------------------------------------
def _git(*args: str, cwd: Path) -> None:
    env = dict(os.environ, GIT_AUTHOR_NAME="b", GIT_AUTHOR_EMAIL="b@x", GIT_COMMITTER_NAME="b",
               GIT_COMMITTER_EMAIL="b@x")
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)


def _native_baselines(root: Path) -> dict:
    """push file:// → checkout → start → first 200, for a new app and for a change; rollback as
    stop + checkout of the previous commit + start; failures of a load loop across restarts."""
    root.mkdir(parents=True)
    src, bare, live = root / "src", root / "remote.git", root / "live"
    shutil.copytree(APP_SOURCE, src, ignore=shutil.ignore_patterns("__pycache__"))
    _git("init", "-q", "-b", "main", cwd=src)
    _git("add", "-A", cwd=src)
    _git("commit", "-qm", "v1", cwd=src)
    _git("init", "-q", "--bare", str(bare), cwd=root)
    port = free_port()
    out: dict = {}

    def deploy(rev: str) -> Proc:
        shutil.rmtree(live, ignore_errors=True)
        live.mkdir()
        subprocess.run(f"git --git-dir={bare} archive {rev} | tar -x -C {live}", shell=True, check=True)
        env = dict(os.environ, PORT=str(port), PYTHONUNBUFFERED="1")
        return Proc([NATIVE_PYTHON, "app.py"], env=env, cwd=live)

    t0 = time.monotonic()
    _git("push", "-q", f"file://{bare}", "main", cwd=src)
    proc = deploy("main")
    wait_for_200(port, t0, timeout=30, proc=proc.popen, interval=0.002)
    out["cold"] = time.monotonic() - t0
    _change_greeting(src)
    _git("commit", "-qam", "v2", cwd=src)
    load = LoadLoop(port)
    load.start()
    time.sleep(0.5)
    t0 = time.monotonic()
    _git("push", "-q", f"file://{bare}", "main", cwd=src)
    proc.stop()
    proc = deploy("main")
    wait_for_200(port, t0, timeout=30, proc=proc.popen, interval=0.002)
    out["change"] = time.monotonic() - t0
    time.sleep(0.5)
    out["deploy_failed"] = load.stop().failed
    out["deploy_load"] = load.describe()
    load = LoadLoop(port)
    load.start()
    time.sleep(0.5)
    t0 = time.monotonic()
    proc.stop()
    proc = deploy("main~1")
    wait_for_200(port, t0, timeout=30, proc=proc.popen, interval=0.002)
    out["rollback"] = time.monotonic() - t0
    time.sleep(0.5)
    out["rollback_failed"] = load.stop().failed
    out["rollback_load"] = load.describe()
    proc.stop()
    return out


def _change_greeting(src: Path) -> None:
    app = src / "app.py"
    text = app.read_text()
    if '"Hello"' not in text:
        raise RuntimeError("python-hello's app.py no longer has the default greeting \"Hello\"")
    app.write_text(text.replace('"Hello"', '"Howdy"', 1))


# --- the platform -----------------------------------------------------------------------------
def _wait_body(p, needle: str, t0: float) -> float:
    deadline = t0 + LIVE_TIMEOUT
    while time.monotonic() < deadline:
        body = p.body(APP)
        if body is not None and needle in body:
            return time.monotonic() - t0
        time.sleep(0.1)
    raise TimeoutError(f"router never served {needle!r} within {LIVE_TIMEOUT:.0f} s")


def _live_under_load(p, out: dict, key: str, load_key: str, label: str, needle: str, action) -> None:
    """Time `action` until the router serves `needle`, with requests running throughout; record
    the time under `key` and the failed requests under `<load_key>_failed`."""
    load = LoadLoop(p.router_port, f"{APP}.{p.domain}")
    load.start()
    t0 = time.monotonic()
    action()
    out[key] = _wait_body(p, needle, t0)
    time.sleep(3)  # keep loading past the switch: draining old instances must not fail requests
    out[f"{load_key}_failed"] = load.stop().failed
    out[f"{load_key}_load"] = load.describe()
    log(f"{label}: {out[key]:.1f} s; {out[f'{load_key}_load']}")


def _empty_image_caches() -> None:
    """A new app's first push as on a machine that never built an image: the image builder's
    and the hosts' caches (kernels and build stacks stay: those are per machine, not per app)."""
    from unicloud.config import Settings

    cache = Settings.from_env().cache_dir
    for sub in ("layers", "stdlib", "initrd"):
        shutil.rmtree(cache / sub, ignore_errors=True)


def _platform_side(root: Path) -> dict:
    from bench.platform_run import Platform, checkout

    root.mkdir(parents=True)
    log("starting unicloud up")
    p = Platform.start(root, extra_env={"UNICLOUD_WARM_WINDOW": str(WARM_WINDOW)})
    out: dict = {}
    try:
        repo = checkout(p, APP_SOURCE, root / "hello")
        p.cli("create", APP, cwd=repo)
        _empty_image_caches()
        t0 = time.monotonic()
        p.git("push", "unicloud", "main", cwd=repo)
        out["cold"] = _wait_body(p, GREETING_V1, t0)
        log(f"cold push to live: {out['cold']:.1f} s")

        _change_greeting(repo)
        p.git("commit", "-qam", "v2", cwd=repo)
        _live_under_load(p, out, "change", "deploy", "app-only change to live", GREETING_V2,
                         lambda: p.git("push", "unicloud", "main", cwd=repo))
        _live_under_load(p, out, "rb_warm", "rb_warm", "warm rollback", GREETING_V1,
                         lambda: p.cli("rollback", "v1", "-a", APP))
        time.sleep(WARM_WINDOW + 15)  # v2's instances leave the warm window and stop
        _live_under_load(p, out, "rb_cold", "rb_cold", "cold rollback", GREETING_V2,
                         lambda: p.cli("rollback", "v2", "-a", APP))
    finally:
        p.stop()
    return out


def _results(base: dict, uni: dict) -> list[Result]:
    err = uni.get("error")
    note_cold = "git push over SSH → build → image → boot → router serves the new body"
    rows = [
        (M_COLD, "s", "cold", B_PUSH, "cold", note_cold + "; empty build cache and image caches"),
        (M_CHANGE, "s", "change", B_PUSH, "change", "greeting changed in app.py; warm build cache"),
        (M_RB_WARM, "s", "rb_warm", B_RESTART, "rollback",
         "`unicloud rollback v1` right after deploying v2 (v1 instances still warm)"),
        (M_RB_COLD, "s", "rb_cold", B_RESTART, "rollback",
         f"`unicloud rollback v2` after the {WARM_WINDOW} s warm window: boots the stored image"),
        (M_FAIL_DEPLOY, "requests", "deploy_failed", B_FAIL, "deploy_failed",
         f"unicloud: {uni.get('deploy_load', '—')}; native: {base.get('deploy_load', '—')}"),
        (M_FAIL_RB_WARM, "requests", "rb_warm_failed", B_FAIL, "rollback_failed",
         f"unicloud: {uni.get('rb_warm_load', '—')}; native: {base.get('rollback_load', '—')}"),
        (M_FAIL_RB_COLD, "requests", "rb_cold_failed", B_FAIL, "rollback_failed",
         f"unicloud: {uni.get('rb_cold_load', '—')}; native: {base.get('rollback_load', '—')}"),
    ]
    out = []
    for metric, unit, ukey, bname, bkey, note in rows:
        b = [base[bkey]] if bkey in base else []
        if ukey in uni:
            out.append(Result(metric, unit, [uni[ukey]], bname, b, note))
        elif err is not None:
            reason = f"{type(err).__name__}: {err}"
            if isinstance(err, RuntimeError) and "unicloud up" in str(err):
                out.append(not_built(metric, unit, f"the whole platform does not run yet: {reason}",
                                     baseline_name=bname, baseline=b))
            else:
                out.append(failed(metric, unit, reason, baseline_name=bname, baseline=b))
        else:
            out.append(failed(metric, unit, "not reached", baseline_name=bname, baseline=b))
    return out

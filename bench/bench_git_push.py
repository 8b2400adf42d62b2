"""Push throughput of a ~50 MB repository of random (incompressible) blobs: unicloud's git
receiver over SSH (the real `python -m unicloud.git` process, paramiko + dulwich) and over smart
HTTP (through the real API process, which mounts the git WSGI app with a2wsgi), against `git push
file://` (git's own receive-pack, no network) in the same run.

Pushes go to a non-deploy branch so no build runs; every round pushes into a fresh, empty
repository. Run alone with `python -m bench --only git_push [--quick]`, or directly with
`.venv/bin/python -m bench.bench_git_push [--quick]`.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FILES = 50
FILE_BYTES = 1024 * 1024  # 50 x 1 MiB of os.urandom
BRANCH = "bench"  # not main/master: stored only, never built
APP = "bench-push"


def log(msg: str) -> None:
    print(f"   [git_push] {msg}", flush=True)


def _git(*args, cwd=None, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True)


def _make_source(root: Path) -> tuple[Path, int]:
    src = root / "src"
    src.mkdir()
    env = dict(os.environ, GIT_AUTHOR_NAME="b", GIT_AUTHOR_EMAIL="b@x", GIT_COMMITTER_NAME="b",
               GIT_COMMITTER_EMAIL="b@x")
    _git("init", "-q", "-b", BRANCH, cwd=src)
    for i in range(FILES):
        (src / f"blob-{i:02d}.bin").write_bytes(os.urandom(FILE_BYTES))
    _git("add", "-A", cwd=src)
    _git("commit", "-q", "-m", "random blobs", cwd=src, env=env)
    _git("repack", "-a", "-d", "-q", cwd=src)  # pushes then reuse packed objects, as a real clone would
    pack = subprocess.run(["git", "pack-objects", "--stdout", "--revs", "-q"], cwd=src, input=b"HEAD\n",
                          capture_output=True, check=True, text=False).stdout
    return src, len(pack)


def _state(root: Path):
    """A migrated state dir with one user, their SSH key and API token, and the app."""
    from unicloud.config import Settings
    from unicloud.db.migrate import upgrade
    from unicloud.db.session import session_scope
    from unicloud.services.apps import create_app
    from unicloud.services.keys import add_key
    from unicloud.services.tokens import create_token
    from unicloud.services.users import get_or_create_user

    from bench.measure import free_port

    settings = Settings(data_dir=root / "data", cache_dir=root / "cache", ssh_port=free_port(),
                        api_port=free_port())
    upgrade(settings)
    key = root / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    with session_scope(settings) as s:
        user = get_or_create_user(s, "bench@example.test")
        add_key(s, user, key.with_suffix(".pub").read_text())
        create_app(s, user, APP)
        token = create_token(s, user)
    return settings, key, token


def _start_ssh_server(settings, root: Path) -> subprocess.Popen:
    env = dict(os.environ, **settings.to_env())
    proc = subprocess.Popen([sys.executable, "-m", "unicloud.git"], env=env,
                            stdout=subprocess.DEVNULL, stderr=open(root / "git-ssh.log", "wb"))
    import socket

    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", settings.ssh_port), timeout=1).close()
            return proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"git SSH server did not start: {(root / 'git-ssh.log').read_text()[-2000:]}")
            time.sleep(0.1)


def _start_http_server(settings, root: Path) -> subprocess.Popen:
    """The product's own API process (`python -m unicloud.api`), which mounts git at /git."""
    code = "from unicloud.api.__main__ import main; main()"
    env = dict(os.environ, **settings.to_env())
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL,
                            stderr=open(root / "git-http.log", "wb"))
    from bench.measure import http_status

    deadline = time.monotonic() + 30
    while http_status(settings.api_port, "/git/") is None:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"git HTTP server did not start: {(root / 'git-http.log').read_text()[-2000:]}")
        time.sleep(0.1)
    return proc


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _time_push(src: Path, url: str, env: dict, reset) -> float:
    reset()
    t0 = time.monotonic()
    subprocess.run(["git", "push", "-q", url, BRANCH], cwd=src, env=env, check=True, capture_output=True)
    return time.monotonic() - t0


def _summary(label: str, secs: list[float], mb: float) -> str:
    return (f"{label}: min {min(secs):.2f} / median {statistics.median(secs):.2f} / max {max(secs):.2f} s, "
            f"median {mb / statistics.median(secs):.1f} MB/s")


def run(quick: bool) -> list[dict]:
    from unicloud.git.repos import remove_repo

    rounds = 2 if quick else 5
    root = Path(tempfile.mkdtemp(prefix="bench-git-push-"))
    procs: list[subprocess.Popen] = []
    try:
        src, pack_bytes = _make_source(root)
        mb = pack_bytes / 1e6
        log(f"source: {FILES} x {FILE_BYTES // 1024} KiB random blobs, pack {mb:.1f} MB")
        settings, key, token = _state(root)
        procs.append(_start_ssh_server(settings, root))
        procs.append(_start_http_server(settings, root))
        base_env = dict(os.environ, GIT_TERMINAL_PROMPT="0")
        ssh_env = dict(base_env, GIT_SSH_COMMAND=(
            f"ssh -i {key} -o IdentitiesOnly=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
            f"-o LogLevel=ERROR -p {settings.ssh_port}"))
        bare = root / "file-target.git"

        def reset_file() -> None:
            shutil.rmtree(bare, ignore_errors=True)
            _git("init", "-q", "--bare", str(bare))

        def reset_app() -> None:
            remove_repo(settings, APP)

        ssh_url = f"ssh://git@127.0.0.1:{settings.ssh_port}/{APP}.git"
        http_url = f"http://bench:{token}@127.0.0.1:{settings.api_port}/git/{APP}.git"
        file_s, ssh_s, http_s = [], [], []
        for i in range(rounds):  # interleaved, so machine load affects all three alike
            file_s.append(_time_push(src, f"file://{bare}", base_env, reset_file))
            ssh_s.append(_time_push(src, ssh_url, ssh_env, reset_app))
            http_s.append(_time_push(src, http_url, base_env, reset_app))
            log(f"round {i + 1}: file {file_s[-1]:.2f} s, ssh {ssh_s[-1]:.2f} s, http {http_s[-1]:.2f} s")
        for label, secs in (("file://", file_s), ("ssh", ssh_s), ("http", http_s)):
            log(_summary(label, secs, mb))
        notes = f"{mb:.1f} MB pack of random blobs, {rounds} rounds, fresh repo each round, loopback"
        return [
            {"metric": "git push ~50 MB over SSH", "unit": "s", "unicloud": ssh_s,
             "baseline_name": "git push file:// (git's receive-pack)", "baseline": file_s, "notes": notes},
            {"metric": "git push ~50 MB over smart HTTP", "unit": "s", "unicloud": http_s,
             "baseline_name": "git push file:// (git's receive-pack)", "baseline": file_s,
             "notes": notes + "; through the real API process (uvicorn, git mounted with a2wsgi)"},
            {"metric": "git push throughput over SSH", "unit": "MB/s", "unicloud": [mb / s for s in ssh_s],
             "baseline_name": "git push file://", "baseline": [mb / s for s in file_s], "notes": notes,
             "higher_is_better": True},
        ]
    finally:
        for p in procs:
            _stop(p)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    for row in run("--quick" in sys.argv):
        print(row)

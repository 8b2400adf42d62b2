"""Sandboxed build roots: an overlay on a cached stack, entered through new namespaces + chroot.

Only the overlay lives in the host's mount namespace (the image builder reads the merged root
after the build). Everything else a build sees — /proc, /dev, /tmp, /cache, /env, /buildpack,
the host CA bundle and resolver — is mounted inside a private mount namespace, so the kernel
drops those mounts by itself when the build's last process dies, however it dies.
"""

from __future__ import annotations

import configparser
import os
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
SANDBOX_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Device nodes a build may need; everything else in /dev stays out.
DEV_NODES = ("null", "zero", "full", "random", "urandom", "tty")
DEFAULT_TIMEOUT = 15 * 60


class SandboxError(RuntimeError):
    """The sandbox could not be set up or torn down."""


class SandboxTimeout(SandboxError):
    def __init__(self, timeout: float):
        super().__init__(f"build timed out after {timeout:.0f}s")
        self.timeout = timeout


@dataclass(frozen=True)
class Bind:
    """A host path made visible at `target` (absolute, inside the root) for one command."""

    source: Path
    target: str
    read_only: bool = False


def base_env(stack: str) -> dict[str, str]:
    """The whole environment a build starts with: nothing from the platform's own process."""
    return {
        "PATH": SANDBOX_PATH,
        "HOME": "/tmp",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "STACK": stack,
        **host_pip_env(),
    }


def host_pip_env() -> dict[str, str]:
    """What pip/uv/poetry inside a stack need from the host's network setup.

    The host reaches PyPI through a TLS-intercepting proxy, so tools must trust the host's CA
    bundle (bound over the stack's one, see `run_in_root`). Index URLs and proxies are passed on;
    host-local wheel directories and file:// indexes are not, so builds stay reproducible.
    """
    bundle = "/etc/ssl/certs/ca-certificates.crt"
    env = {
        "PIP_CERT": bundle,
        "SSL_CERT_FILE": bundle,
        "REQUESTS_CA_BUNDLE": bundle,
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_NO_INPUT": "1",
        "PIP_ROOT_USER_ACTION": "ignore",
    }
    conf = _host_pip_config()
    index = conf.get("index-url") or os.environ.get("PIP_INDEX_URL")
    if index and index.startswith(("http://", "https://")):
        env["PIP_INDEX_URL"] = env["UV_DEFAULT_INDEX"] = index
    extras = (conf.get("extra-index-url") or os.environ.get("PIP_EXTRA_INDEX_URL") or "").split()
    extras = [u for u in extras if u.startswith(("http://", "https://"))]
    if extras:
        env["PIP_EXTRA_INDEX_URL"] = env["UV_INDEX"] = " ".join(extras)
    timeout = conf.get("timeout") or conf.get("default-timeout") or os.environ.get("PIP_DEFAULT_TIMEOUT")
    if timeout:
        env["PIP_DEFAULT_TIMEOUT"] = timeout
        env["UV_HTTP_TIMEOUT"] = timeout
    for key in ("trusted-host", "proxy"):
        if conf.get(key):
            env["PIP_" + key.upper().replace("-", "_")] = conf[key]
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy"):
        if os.environ.get(var):
            env[var] = os.environ[var]
    return env


def _host_pip_config() -> dict[str, str]:
    """Merge the host's pip config files in pip's own order (later wins), [global] then [install]."""
    files = [
        Path("/etc/pip.conf"),
        *(Path(d) / "pip" / "pip.conf" for d in os.environ.get("XDG_CONFIG_DIRS", "/etc/xdg").split(":")),
        Path.home() / ".pip" / "pip.conf",
        Path.home() / ".config" / "pip" / "pip.conf",
    ]
    if os.environ.get("PIP_CONFIG_FILE"):
        files.append(Path(os.environ["PIP_CONFIG_FILE"]))
    merged: dict[str, str] = {}
    for f in files:
        if not f.is_file():
            continue
        parser = configparser.ConfigParser(interpolation=None)
        try:
            parser.read(f)
        except configparser.Error:
            continue
        for section in ("global", "install"):
            if parser.has_section(section):
                merged.update({k: v.strip() for k, v in parser.items(section)})
    return merged


def run_in_root(
    root: Path,
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    binds: Sequence[Bind] = (),
    log: Callable[[str], None] = print,
    timeout: float = DEFAULT_TIMEOUT,
    workdir: str = "/",
) -> int:
    """Run `argv` chrooted into `root` in new mount/pid/ipc/uts namespaces; return its exit code.

    Output lines (stdout and stderr merged) go to `log` as they come. On timeout the whole
    process group is killed (the namespace's init dies, so the kernel kills everything in it)
    and SandboxTimeout is raised.
    """
    proc = spawn_in_root(root, argv, env=env, binds=binds, workdir=workdir, stdout=subprocess.PIPE)
    reader = threading.Thread(target=_pump, args=(proc.stdout, log), daemon=True)
    reader.start()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        reader.join(5)
        raise SandboxTimeout(timeout) from None
    except BaseException:
        _kill_group(proc)
        raise
    reader.join()
    return proc.returncode


def spawn_in_root(
    root: Path,
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    binds: Sequence[Bind] = (),
    workdir: str = "/",
    stdout=subprocess.PIPE,
) -> subprocess.Popen:
    """Start `argv` in the sandbox without waiting (stderr joins stdout).

    The process leads its own process group; `kill_sandboxed(proc)` ends it and everything it
    started (`--kill-child` plus the pid namespace take down the whole tree).
    """
    setup = _namespace_setup_script(root, binds)
    inner = ["/usr/bin/env", "-i", *(f"{k}={v}" for k, v in env.items()), *argv]
    script = (f"{setup}\ncd {shlex.quote(str(root))}\n"
              f"exec chroot . /bin/sh -c 'cd \"$0\" && exec \"$@\"' {shlex.quote(workdir)} {shlex.join(inner)}\n")
    cmd = ["unshare", "--mount", "--pid", "--ipc", "--uts", "--fork", "--kill-child",
           "--propagation", "private", "/bin/sh", "-ec", script]
    return subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=subprocess.STDOUT,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"},
        start_new_session=True,
    )


def kill_sandboxed(proc: subprocess.Popen) -> None:
    """SIGKILL a sandboxed command's whole process group and reap it."""
    _kill_group(proc)


def _pump(stream, log: Callable[[str], None]) -> None:
    for raw in iter(stream.readline, b""):
        log(raw.decode("utf-8", "replace").rstrip("\n"))
    stream.close()


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _namespace_setup_script(root: Path, binds: Sequence[Bind]) -> str:
    """Shell run inside the new namespaces, before chroot: mounts that vanish with the build."""
    # Every line costs a process or two, and a build enters a sandbox four times: keep it short
    # (one `cp -a` makes all device nodes, `mount -o bind,ro` binds and remounts read-only).
    r = shlex.quote(str(root))
    nodes = " ".join(f"/dev/{n}" for n in DEV_NODES)
    lines = [
        f"mount -t proc -o nosuid,nodev,noexec proc {r}/proc",
        f"mount -t tmpfs -o nosuid,mode=0755,size=64k dev {r}/dev",
        f"cp -a {nodes} {r}/dev/",  # the same character devices (major, minor) as the host's
        f"mkdir -p {r}/dev/shm {r}/dev/pts && mount -t tmpfs -o nosuid,nodev,mode=1777 shm {r}/dev/shm",
        f"ln -s /proc/self/fd {r}/dev/fd && ln -s /proc/self/fd/0 {r}/dev/stdin",
        f"ln -s /proc/self/fd/1 {r}/dev/stdout && ln -s /proc/self/fd/2 {r}/dev/stderr",
        f"mount -t tmpfs -o nosuid,nodev,mode=1777 tmp {r}/tmp",
    ]
    # The host's CA bundle (TLS-intercepting proxy) and resolver, for this build only.
    extra = [Bind(HOST_CA_BUNDLE, "/etc/ssl/certs/ca-certificates.crt", True)]
    for f in ("/etc/resolv.conf", "/etc/hosts"):
        if Path(f).exists():
            extra.append(Bind(Path(f), f, True))
    for b in [*extra, *binds]:
        target = Path(str(root) + b.target)
        src, dst = shlex.quote(str(b.source)), shlex.quote(str(target))
        if Path(b.source).is_dir():
            if not target.is_dir():
                lines.append(f"mkdir -p {dst}")
        elif not target.exists():
            lines.append(f"mkdir -p $(dirname {dst}) && {{ [ -e {dst} ] || touch {dst}; }}")
        lines.append(f"mount {'-o bind,ro' if b.read_only else '--bind'} {src} {dst}")
    return "\n".join(lines)


@dataclass
class Sandbox:
    """A per-build overlay root on a stack. Stays mounted until `close()` (the image builder
    reads `root` after the build)."""

    stack_root: Path
    work_dir: Path
    stack: str
    root: Path = field(init=False)
    _mounted: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        self.root = self.work_dir / "root"

    def open(self) -> "Sandbox":
        upper, work = self.work_dir / "upper", self.work_dir / "overlay-work"
        if is_mounted(self.root):
            raise SandboxError(f"{self.root} is already mounted (another build in this work dir?)")
        for d in (upper, work):  # a layer left by a worker that died must not leak into this build
            _rmtree_same_fs(d)
        for d in (upper, work, self.root):
            d.mkdir(parents=True, exist_ok=True)
        opts = f"lowerdir={self.stack_root},upperdir={upper},workdir={work}"
        res = subprocess.run(
            ["mount", "-t", "overlay", "overlay", "-o", opts, str(self.root)], capture_output=True, text=True
        )
        if res.returncode != 0:
            raise SandboxError(f"cannot mount build overlay: {res.stderr.strip()}")
        self._mounted = True
        return self

    def run(self, argv: Sequence[str], *, env: Mapping[str, str], binds: Sequence[Bind] = (),
            log: Callable[[str], None] = print, timeout: float = DEFAULT_TIMEOUT, workdir: str = "/") -> int:
        if not self._mounted:
            raise SandboxError("sandbox is not open")
        return run_in_root(self.root, argv, env=env, binds=binds, log=log, timeout=timeout, workdir=workdir)

    def spawn(self, argv: Sequence[str], *, env: Mapping[str, str], binds: Sequence[Bind] = (),
              workdir: str = "/", stdout=subprocess.PIPE) -> subprocess.Popen:
        if not self._mounted:
            raise SandboxError("sandbox is not open")
        return spawn_in_root(self.root, argv, env=env, binds=binds, workdir=workdir, stdout=stdout)

    def close(self) -> None:
        """Unmount the overlay and delete the build's layer. Safe to call twice."""
        if self._mounted:
            unmount(self.root)
            self._mounted = False
        for name in ("upper", "overlay-work", "root"):
            _rmtree_same_fs(self.work_dir / name)

    def __enter__(self) -> "Sandbox":
        return self if self._mounted else self.open()

    def __exit__(self, *exc) -> None:
        self.close()


def unmount(path: Path, attempts: int = 10) -> None:
    """Unmount `path`, retrying while it is busy (a dying build may still hold it), then lazily."""
    for _ in range(attempts):
        if not is_mounted(path):
            return
        if subprocess.run(["umount", str(path)], capture_output=True).returncode == 0:
            return
        time.sleep(0.2)
    subprocess.run(["umount", "--lazy", str(path)], capture_output=True)
    if is_mounted(path):
        raise SandboxError(f"cannot unmount {path}")


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below `path` in this mount namespace (for cleanup and tests)."""
    prefix = str(path.resolve())
    found = []
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            mnt = line.split()[4].replace("\\040", " ")
            if mnt == prefix or mnt.startswith(prefix + "/"):
                found.append(mnt)
    return found


def is_mounted(path: Path) -> bool:
    return str(path.resolve()) in mounts_under(path)


def cleanup_stale_mounts(under: Path) -> list[str]:
    """Unmount overlays left below `under` by a worker that died mid-build; returns them."""
    stale = sorted(mounts_under(under), key=len, reverse=True) if under.exists() else []
    for m in stale:
        unmount(Path(m))
    return stale


def _rmtree_same_fs(path: Path) -> None:
    """rm -rf that refuses to cross into a mount (never delete through a bind into the host)."""
    if path.exists():
        subprocess.run(["rm", "-rf", "--one-file-system", str(path)], check=False)

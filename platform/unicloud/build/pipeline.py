"""Source tree → built root + runtime manifest, by running buildpacks in a sandboxed stack.

The result stays mounted (`BuildOutput.root`) until the caller — the image builder — has read
it and calls `close()`. Every failure becomes a `BuildError` with a short, specific reason that
the git push shows to the developer.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

import unicloud
from unicloud.build.procfile import ProcfileError, parse_procfile
from unicloud.build.sandbox import Bind, Sandbox, SandboxTimeout, base_env, cleanup_stale_mounts
from unicloud.build.stack import DEFAULT_STACK, StackError, ensure_stack

# The repo's buildpacks/ (the package is installed editable from the repo); overridable for
# deployments that ship buildpacks elsewhere.
BUILDPACKS_DIR = Path(os.environ.get("UNICLOUD_BUILDPACKS_DIR")
                      or Path(unicloud.__file__).resolve().parents[2] / "buildpacks")
BUILDPACK_ORDER = ("python", "go")
MANIFEST = "app/.unicloud/runtime.json"
NO_BUILDPACK = "no buildpack detected: add requirements.txt, pyproject.toml or go.mod"
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_FAILURE_LINE = re.compile(r"^ !\s+(?!\s|Warning:)(.+)$")


class BuildError(Exception):
    """A build failed; `reason` is one line meant for the developer."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class BuildOutput:
    root: Path  # merged build root, mounted until close()
    manifest: dict
    buildpack: str
    stack: str
    _sandbox: Sandbox = field(repr=False)

    @property
    def sandbox(self) -> Sandbox:
        """The open sandbox, e.g. to run the built app for a check (`sandbox.spawn`)."""
        return self._sandbox

    def close(self) -> None:
        """Unmount the build root and delete the build's layer."""
        self._sandbox.close()

    def __enter__(self) -> "BuildOutput":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def run_build(
    source_dir: Path,
    *,
    app: str,
    cache_dir: Path,
    env: dict[str, str],
    log: Callable[[str], None],
    timeout: float = 900,
    work_dir: Path,
    buildpacks_dir: Path = BUILDPACKS_DIR,
) -> BuildOutput:
    """Build `source_dir` for `app`; `env` is the app's config (given to buildpacks as ENV_DIR).

    `work_dir` is this build's scratch directory (overlay layers, env dir); `cache_dir` is the
    app's persistent build cache.
    """
    source_dir, work_dir = Path(source_dir), Path(work_dir)
    if not source_dir.is_dir():
        raise BuildError(f"source tree {source_dir} does not exist")
    deadline = time.monotonic() + timeout
    cleanup_stale_mounts(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    cache_dir.mkdir(parents=True, exist_ok=True)
    env_dir = _write_env_dir(work_dir / "env", env)
    started = time.monotonic()
    build = _Build(source_dir, work_dir, cache_dir, env_dir, log, deadline, timeout, buildpacks_dir)
    try:
        output = build.run()
    except SandboxTimeout:
        build.close()
        raise BuildError(f"build timed out after {timeout:.0f}s") from None
    except BuildError:
        build.close()
        raise
    except StackError as e:
        build.close()
        raise BuildError(f"build stack unavailable: {e}") from e
    except BaseException:
        build.close()
        raise
    log(f"-----> Build for {app} finished in {time.monotonic() - started:.1f}s "
        f"({output.buildpack} on {output.stack})")
    return output


def _write_env_dir(env_dir: Path, env: dict[str, str]) -> Path:
    """Heroku's ENV_DIR: one file per config var, named after it."""
    shutil.rmtree(env_dir, ignore_errors=True)
    env_dir.mkdir(parents=True)
    for name, value in env.items():
        if not _ENV_NAME.match(name):
            raise BuildError(f"invalid config var name {name!r}")
        (env_dir / name).write_text(value)
    return env_dir


class _Build:
    def __init__(self, source, work_dir, cache_dir, env_dir, log, deadline, timeout, buildpacks_dir):
        self.source, self.work_dir, self.cache_dir, self.env_dir = source, work_dir, cache_dir, env_dir
        self.log, self.deadline, self.timeout, self.buildpacks = log, deadline, timeout, buildpacks_dir
        self.sandbox: Sandbox | None = None

    def run(self) -> BuildOutput:
        stack = DEFAULT_STACK
        self._open(stack)
        buildpack = self._detect()
        wanted = self._stack_of(buildpack)
        if wanted != stack:
            self.close()
            stack = wanted
            self._open(stack)
        self._compile(buildpack, stack)
        manifest = self._manifest(buildpack, stack)
        return BuildOutput(root=self.sandbox.root, manifest=manifest, buildpack=buildpack,
                           stack=stack, _sandbox=self.sandbox)

    def close(self) -> None:
        if self.sandbox is not None:
            self.sandbox.close()
            self.sandbox = None

    def _open(self, stack: str) -> None:
        root = ensure_stack(stack, log=self.log)
        self.stack = stack
        self.sandbox = Sandbox(root, self.work_dir, stack).open()
        app_dir = self.sandbox.root / "app"
        # cp keeps modes and symlinks; .git never reaches the build.
        subprocess.run(["cp", "-a", "--no-target-directory", str(self.source), str(app_dir)], check=True)
        shutil.rmtree(app_dir / ".git", ignore_errors=True)

    def _remaining(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise SandboxTimeout(self.timeout)
        return left

    def _run(self, buildpack: str, script: str, *args: str, echo: bool = True) -> tuple[int, list[str]]:
        lines: list[str] = []

        def sink(line: str) -> None:
            lines.append(line)
            if echo:
                self.log(line)

        binds = [
            Bind(self.buildpacks / buildpack, "/buildpack", read_only=True),
            Bind(self.cache_dir, "/cache"),
            Bind(self.env_dir, "/env", read_only=True),
        ]
        code = self.sandbox.run([f"/buildpack/bin/{script}", *args], env=base_env(self.stack),
                                binds=binds, log=sink, timeout=self._remaining(), workdir="/app")
        return code, lines

    def _detect(self) -> str:
        for name in BUILDPACK_ORDER:
            if not (self.buildpacks / name / "bin" / "detect").is_file():
                raise BuildError(f"buildpack {name} is missing bin/detect")
            code, _ = self._run(name, "detect", "/app", echo=False)
            if code == 0:
                return name
        raise BuildError(NO_BUILDPACK)

    def _stack_of(self, buildpack: str) -> str:
        if not (self.buildpacks / buildpack / "bin" / "stack").is_file():
            return DEFAULT_STACK
        code, lines = self._run(buildpack, "stack", "/app", echo=False)
        if code != 0:
            raise BuildError(_failure_reason(lines) or f"{buildpack} buildpack could not choose a stack")
        names = [ln.strip() for ln in lines if ln.strip()]
        if not names:
            raise BuildError(f"{buildpack} buildpack's bin/stack printed no stack name")
        return names[-1]

    def _compile(self, buildpack: str, stack: str) -> None:
        self.log(f"-----> Building on the {stack} stack with the {buildpack} buildpack")
        # Two builds of one app must not rewrite its cache at the same time.
        with open(self.cache_dir / ".build.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            code, lines = self._run(buildpack, "compile", "/app", "/cache", "/env")
        if code != 0:
            raise BuildError(_failure_reason(lines) or f"{buildpack} buildpack failed to compile the app (exit {code})")

    def _manifest(self, buildpack: str, stack: str) -> dict:
        path = self.sandbox.root / MANIFEST
        try:
            manifest = json.loads(path.read_text())
        except FileNotFoundError:
            raise BuildError(f"{buildpack} buildpack wrote no /{MANIFEST}") from None
        except json.JSONDecodeError as e:
            raise BuildError(f"/{MANIFEST} is not valid JSON: {e}") from None
        code, lines = self._run(buildpack, "release", "/app", echo=False)
        if code != 0:
            raise BuildError(f"{buildpack} buildpack's bin/release failed (exit {code})")
        defaults = _release_defaults(lines)
        procfile = self.sandbox.root / "app" / "Procfile"
        declared = {}
        if procfile.is_file():
            try:
                declared = parse_procfile(procfile.read_text())
            except ProcfileError as e:
                raise BuildError(str(e)) from None
        types = {**manifest.get("process_types", {}), **defaults, **declared}
        self.log("-----> Discovering process types")
        if declared:
            self.log(f"       Procfile declares types     -> {', '.join(declared)}")
        extra = [t for t in defaults if t not in declared]
        if extra:
            self.log(f"       Default types for buildpack -> {', '.join(extra)}")
        if "web" not in types:
            raise BuildError("no web process: add a Procfile with a 'web:' line"
                             + (" (or an app.py)" if buildpack == "python" else ""))
        manifest["process_types"] = types
        path.write_text(json.dumps(manifest, indent=2) + "\n")
        return manifest


def _release_defaults(lines: list[str]) -> dict[str, str]:
    try:
        data = yaml.safe_load("\n".join(lines)) or {}
    except yaml.YAMLError as e:
        raise BuildError(f"bin/release printed invalid YAML: {e}") from None
    types = data.get("default_process_types") or {} if isinstance(data, dict) else {}
    if not isinstance(types, dict):
        raise BuildError("bin/release: default_process_types is not a mapping")
    return {str(k): str(v) for k, v in types.items()}


def _failure_reason(lines: list[str]) -> str | None:
    """The first ` !     reason` line a buildpack printed (Heroku's error style)."""
    for line in lines:
        m = _FAILURE_LINE.match(line)
        if m:
            return m[1].strip()
    return None

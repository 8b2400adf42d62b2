"""Build and boot a unicloud image of a sample app with the product's own code.

The build goes through `unicloud.build.pipeline.run_build` (buildpacks in the sandboxed stack)
and `unicloud.image.builder.build_image`; the boot uses the product's QEMU command line
(`unicloud.hypervisor.qemu.build_argv`) and boot-config cpio, run in the foreground so the
benchmark times exactly QEMU exec → first HTTP 200, like it does for the baselines.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from unicloud.config import Settings

from bench.measure import Proc

REPO = Path(__file__).resolve().parents[1]
APPS = REPO / "tests" / "apps"


@dataclass
class BuiltImage:
    dir: Path
    kernel: Path
    rootfs: Path
    runtime: dict  # the runtime manifest the build produced (cmd, env, workdir)
    build_seconds: float
    image_seconds: float


def bench_cache() -> Path:
    return Settings.from_env().cache_dir / "bench"


_built: dict[str, BuiltImage] = {}


def build_once(app: str, *, log=lambda line: None) -> BuiltImage:
    """The image of `app`, built at most once per suite run (benchmarks share it)."""
    if app not in _built:
        _built[app] = build(app, log=log)
    return _built[app]


def build(app: str, *, log=lambda line: None, cache_dir: Path | None = None) -> BuiltImage:
    """run_build + build_image of tests/apps/<app>; raises ImportError while either is missing."""
    from unicloud.build.pipeline import run_build
    from unicloud.image.builder import build_image
    from unicloud.image.store import ImageStore

    source = APPS / app
    if not source.is_dir():
        raise FileNotFoundError(f"no sample app {source}")
    cache_dir = cache_dir or bench_cache() / "app-cache" / app
    store = ImageStore(bench_cache() / "images")
    with tempfile.TemporaryDirectory(prefix=f"bench-build-{app}-") as work:
        t0 = time.monotonic()
        output = run_build(source, app=app, cache_dir=cache_dir, env={}, log=log,
                           work_dir=Path(work))
        t1 = time.monotonic()
        try:
            image = build_image(output.root, output.manifest, store=store)
        finally:
            output.close()
        t2 = time.monotonic()
        runtime = output.manifest
    image_dir = _image_dir(image, store)
    return BuiltImage(image_dir, image_dir / "kernel", image_dir / "rootfs.cpio.xz", runtime,
                      t1 - t0, t2 - t1)


def _image_dir(image, store) -> Path:
    """build_image's return value, whatever shape it has: a path, or an object naming one."""
    if isinstance(image, (str, Path)):
        return Path(image)
    for attr in ("dir", "path", "image_dir"):
        value = getattr(image, attr, None)
        if value is not None:
            return Path(value)
    digest = getattr(image, "digest", None) or (image.get("digest") if isinstance(image, dict) else None)
    if digest:
        return Path(store.path(digest)) if hasattr(store, "path") else Path(store.root) / digest.split(":")[-1]
    raise TypeError(f"cannot find the image directory in build_image's result {image!r}")


def boot(image: BuiltImage, host_port: int, workdir: Path, *, memory_mb: int | None = None) -> Proc:
    """Start the image in the foreground with the product's QEMU command line."""
    from unicloud.hypervisor.accel import probe_accelerator
    from unicloud.hypervisor.bootconfig import build_boot_config
    from unicloud.hypervisor.initrd import assemble as assemble_initrd
    from unicloud.hypervisor.qemu import GUEST_PORT, QemuSpec, build_argv

    env = dict(image.runtime.get("env") or {})
    env.update(PORT=str(GUEST_PORT), DYNO="web.1")
    cmd = image.runtime["process_types"]["web"]
    cfg = build_boot_config(env, cmd, workdir=image.runtime.get("workdir"))
    initrd = assemble_initrd(image.rootfs, cfg, workdir / "initrd")
    spec = QemuSpec(kernel=image.kernel, initrd=initrd, host_port=host_port,
                    console_log=workdir / "console.log", qmp_socket=workdir / "qmp.sock",
                    control_socket=workdir / "control.sock", pidfile=workdir / "qemu.pid",
                    accel=probe_accelerator(), daemonize=False)
    if memory_mb:
        spec.memory_mb = memory_mb
    return Proc(build_argv(spec), log=workdir / "qemu.out")


def memory_mb_default() -> int:
    from unicloud.hypervisor.qemu import QemuSpec

    return QemuSpec.__dataclass_fields__["memory_mb"].default


def runtime_summary(image: BuiltImage) -> str:
    return json.dumps({k: image.runtime.get(k) for k in ("runtime", "version")})

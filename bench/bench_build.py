"""Build time of every sample app (tests/apps/*) through the product's `run_build`: a build with
an empty per-app cache (cold) beside a rebuild with the cache the first one left (warm).

The build stacks themselves are cached per machine (`unicloud prepare`) on both sides, so
"cold" means a new app, not a new machine. The image step is timed the same way for each app:
`build_image` with empty caches beside `build_image` after an app-only change (one app file
edited in the build root) with the caches the first one left: the compressed runtime layer,
module parses and bytecode. Its notes carry the image's size.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from bench.core import Result, failed, not_built
from bench.unicloud_image import APPS

def log(msg: str) -> None:
    print(f"   [build] {msg}", flush=True)


def run(quick: bool) -> list[Result]:
    try:
        from unicloud.build.pipeline import run_build
    except ImportError as e:
        return [not_built("build time", "s", f"unicloud.build.pipeline.run_build missing: {e}")]
    # One cold and one warm build per app in both modes: a build is already one round.
    apps = sorted(p.name for p in APPS.iterdir() if p.is_dir())
    results = []
    for app in apps:
        results += _one(run_build, app)
    return results


def _one(run_build, app: str) -> list[Result]:
    metric = f"build {app}, warm cache"
    base_name = "cold cache (same app, same run)"
    lines: list[str] = []
    with tempfile.TemporaryDirectory(prefix=f"bench-buildtime-{app}-") as tmp:
        cache = Path(tmp) / "cache"
        times = []
        try:
            for label in ("cold", "warm"):
                work = Path(tmp) / f"work-{label}"
                t0 = time.monotonic()
                out = run_build(APPS / app, app=app, cache_dir=cache, env={}, log=lines.append,
                                work_dir=work, timeout=600)
                times.append(time.monotonic() - t0)
                log(f"{app} {label}: {times[-1]:.1f} s ({out.buildpack} on {out.stack})")
                if label == "cold":
                    out.close()
                    shutil.rmtree(work, ignore_errors=True)
        except Exception as e:
            reason = getattr(e, "reason", None) or f"{type(e).__name__}: {e}"
            log(f"{app} failed after {len(times)} builds: {reason}")
            return [failed(metric, "s", f"build failed: {reason}", baseline_name=base_name,
                           baseline=times[:1])]
        try:
            build = Result(metric, "s", [times[1]], base_name, [times[0]],
                           notes=f"{out.buildpack} buildpack on {out.stack}; run_build only "
                                 f"(no image)")
            return [build, _image_step(app, out, Path(tmp))]
        finally:
            out.close()


def _image_step(app: str, out, tmp: Path) -> Result:
    """Empty caches vs an app-only change with the caches the first build left."""
    from unicloud.image.builder import build_image
    from unicloud.image.store import ImageStore

    metric = f"image {app}, app-only change (warm caches)"
    base_name = "same image step with empty caches"
    store, caches = ImageStore(tmp / "images"), tmp / "image-caches"
    try:
        t0 = time.monotonic()
        cold = build_image(out.root, out.manifest, store=store, cache_dir=caches,
                           log=lambda line: None)
        t1 = time.monotonic()
        workdir = out.root / (out.manifest.get("workdir") or "/app").lstrip("/")
        (workdir / "BENCH_CHANGE.txt").write_text("an app-only change\n")
        warm = build_image(out.root, out.manifest, store=store, cache_dir=caches,
                           source_date_epoch=1, log=lambda line: None)
        t2 = time.monotonic()
    except Exception as e:
        log(f"{app} image failed: {type(e).__name__}: {e}")
        return failed(metric, "s", e, baseline_name=base_name)
    reused = [layer["name"] for layer in warm.manifest["rootfs"].get("layers", [])
              if layer["sha256"] in {c["sha256"] for c in cold.manifest["rootfs"]["layers"]}]
    log(f"{app} image: empty caches {t1 - t0:.1f} s, app-only change {t2 - t1:.1f} s, "
        f"{warm.total_size / 1e6:.2f} MB")
    return Result(metric, "s", [t2 - t1], base_name, [t1 - t0],
                  notes=f"image {warm.total_size / 1e6:.2f} MB (kernel "
                        f"{warm.manifest['kernel']['size'] / 1e6:.2f} + rootfs "
                        f"{warm.manifest['rootfs']['size'] / 1e6:.2f}); layers reused: "
                        f"{', '.join(reused) or 'none'}")

"""Build time of every sample app (tests/apps/*) through the product's `run_build`: a build with
an empty per-app cache (cold) beside a rebuild with the cache the first one left (warm).

The build stacks themselves are cached per machine (`unicloud prepare`) on both sides, so
"cold" means a new app, not a new machine. Only the buildpack step is timed here; the image
step is timed by bench_vm's python-hello build.
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
    return [_one(run_build, app) for app in apps]


def _one(run_build, app: str) -> Result:
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
                out.close()
                shutil.rmtree(work, ignore_errors=True)
                log(f"{app} {label}: {times[-1]:.1f} s ({out.buildpack} on {out.stack})")
        except Exception as e:
            reason = getattr(e, "reason", None) or f"{type(e).__name__}: {e}"
            log(f"{app} failed after {len(times)} builds: {reason}")
            return failed(metric, "s", f"build failed: {reason}", baseline_name=base_name,
                          baseline=times[:1])
    return Result(metric, "s", [times[1]], base_name, [times[0]],
                  notes=f"{out.buildpack} buildpack on {out.stack}; run_build only (no image)")

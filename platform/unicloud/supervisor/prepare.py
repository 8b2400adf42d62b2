"""`unicloud prepare`: build the expensive, cacheable artifacts once per machine, before first use.

Kernels and build stacks live in the shared cache dir (`~/.cache/unicloud` by default), keyed by
the hash of their recipe, so a second run (or CI on the same machine) only checks them.
"""

from __future__ import annotations

import os
import sys
import time

from unicloud.config import Settings

DEFAULT_STACKS = tuple(s for s in os.environ.get("UNICLOUD_PREPARE_STACKS", "debian-bookworm").split(",") if s)


def say(msg: str) -> None:
    print(f"==> {msg}", file=sys.stderr, flush=True)


def run_prepare(settings: Settings | None = None, *, stacks: tuple[str, ...] = DEFAULT_STACKS) -> int:
    settings = settings or Settings.from_env()
    os.environ.setdefault("UNICLOUD_CACHE_DIR", str(settings.cache_dir))
    from unicloud.build.stack import ensure_stack
    from unicloud.image.init.build import ensure_init
    from unicloud.image.kernel.build import ensure_kernel

    t0 = time.monotonic()
    say(f"kernel: {ensure_kernel('microvm')}")
    say(f"init: {ensure_init()}")
    for name in stacks:
        say(f"build stack {name}: {ensure_stack(name, log=lambda line: print(line, file=sys.stderr, flush=True))}")
    say(f"prepared in {time.monotonic() - t0:.1f}s (cache: {settings.cache_dir})")
    return 0

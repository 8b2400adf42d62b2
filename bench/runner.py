"""Find benchmark modules and run one, turning whatever it returns (Result objects or plain dicts)
or raises into Result rows, so one broken benchmark never hides the others."""

from __future__ import annotations

import importlib
import pkgutil
import traceback

import bench
from bench.core import Result, failed, from_dict


def discover(package=bench) -> list[str]:
    """Dotted names of the package's `bench_*` modules, sorted."""
    return sorted(f"{package.__name__}.{m.name}" for m in pkgutil.iter_modules(package.__path__)
                  if m.name.startswith("bench_"))


def run_module(name: str, quick: bool) -> list[Result]:
    short = name.rsplit(".", 1)[-1]
    try:
        module = importlib.import_module(name)
        run = getattr(module, "run")
    except Exception as e:
        return [failed(f"{short} (import)", "—", e)]
    try:
        raw = run(quick)
    except Exception as e:
        traceback.print_exc()
        return [failed(f"{short}", "—", e)]
    out = []
    for item in raw or []:
        try:
            out.append(item if isinstance(item, Result) else from_dict(dict(item)))
        except Exception as e:
            out.append(failed(f"{short} (bad result)", "—", e))
    return out

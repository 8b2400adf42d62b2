"""Write /app/.unicloud/runtime.json for a Python app (format: docs/architecture.md).

Usage: write_manifest.py BUILD_DIR PYTHON_BINARY DEFAULT_WEB_CONCURRENCY
Runs with the app's venv python so the version and paths are the ones the app will use.
"""

from __future__ import annotations

import json
import os
import sys
import sysconfig
from pathlib import Path


def shared_objects(root: Path) -> list[str]:
    """C extensions and bundled libraries: the image builder walks their library needs."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in (".git", ".unicloud")]
        for name in filenames:
            if name.endswith(".so") or ".so." in name:
                p = Path(dirpath, name)
                if p.is_file() and not p.is_symlink():
                    found.append(str(p))
    return sorted(found)


def main() -> None:
    build_dir, python, concurrency = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    minor = f"{sys.version_info.major}.{sys.version_info.minor}"
    venv = build_dir / ".venv"
    site = venv / "lib" / f"python{minor}" / "site-packages"
    manifest = {
        "runtime": "python",
        "version": ".".join(map(str, sys.version_info[:3])),
        "interpreter": os.path.realpath(python),
        "stdlib": sysconfig.get_path("stdlib"),
        "site_packages": [str(site)],
        "include": [str(build_dir)],
        "exclude": [
            str(build_dir / ".unicloud" / "cache"),
            str(build_dir / ".git"),
            str(site / "pip"),
        ],
        "elf": shared_objects(build_dir),
        "env": {
            "PATH": f"{venv}/bin:/usr/local/bin:/usr/bin:/bin",
            "VIRTUAL_ENV": str(venv),
            "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            "WEB_CONCURRENCY": concurrency,
            "FORWARDED_ALLOW_IPS": "*",
        },
        "workdir": str(build_dir),
        "process_types": {},
    }
    out = build_dir / ".unicloud" / "runtime.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(manifest, indent=2) + "\n")


if __name__ == "__main__":
    main()

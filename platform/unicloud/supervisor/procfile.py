"""Where the platform's own Procfile lives; parsing is shared with app builds (`unicloud.build.procfile`)."""

from __future__ import annotations

from pathlib import Path

from unicloud.build.procfile import ProcfileError, parse_procfile

__all__ = ["ProcfileError", "parse_procfile", "platform_procfile"]


def platform_procfile() -> Path:
    """The repo's top-level Procfile (the package is installed editable from the checkout)."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent / "Procfile"
        if candidate.is_file() and (parent / "pyproject.toml").is_file():
            return candidate
    raise FileNotFoundError("cannot find the platform Procfile next to pyproject.toml")

"""Parse Procfiles (the platform's own and apps'): `name: command` lines, comments and blanks ignored."""

from __future__ import annotations

import re
from pathlib import Path

_LINE = re.compile(r"^([A-Za-z0-9_-]+)\s*:\s*(.+)$")


class ProcfileError(ValueError):
    pass


def parse_procfile(text: str) -> dict[str, str]:
    procs: dict[str, str] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = _LINE.match(line)
        if not m:
            raise ProcfileError(f"Procfile line {lineno}: expected 'name: command', got {raw!r}")
        name, cmd = m.group(1), m.group(2).strip()
        if name in procs:
            raise ProcfileError(f"Procfile line {lineno}: process type {name!r} is defined twice")
        procs[name] = cmd
    return procs


def platform_procfile() -> Path:
    """The repo's top-level Procfile (the package is installed editable from the checkout)."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent / "Procfile"
        if candidate.is_file() and (parent / "pyproject.toml").is_file():
            return candidate
    raise FileNotFoundError("cannot find the platform Procfile next to pyproject.toml")

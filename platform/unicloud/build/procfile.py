"""Procfile parsing: `name: command` lines, as Heroku reads them."""

from __future__ import annotations

import re

_LINE = re.compile(r"^([A-Za-z0-9_-]+)\s*:\s*(.*?)\s*$")


class ProcfileError(ValueError):
    pass


def parse_procfile(text: str) -> dict[str, str]:
    """Process types declared in a Procfile. Blank lines and `#` comments are skipped; a
    malformed line, an empty command or a type declared twice is an error naming the line."""
    types: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = _LINE.match(line)
        if not m:
            raise ProcfileError(f"Procfile line {number} is not 'name: command': {raw.strip()!r}")
        name, command = m[1], m[2]
        if not command:
            raise ProcfileError(f"Procfile line {number}: process type {name!r} has no command")
        if name in types:
            raise ProcfileError(f"Procfile line {number}: process type {name!r} declared twice")
        types[name] = command
    return types

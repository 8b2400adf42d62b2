"""Plain, Heroku-like text output: stable lines that scripts and people can both read."""

from __future__ import annotations

import datetime as dt
import json
import sys
from typing import Any, Iterable, Sequence

import typer


def echo(text: str = "") -> None:
    typer.echo(text)


def header(text: str) -> None:
    echo(f"=== {text}")


def print_json(data: Any) -> None:
    echo(json.dumps(data, indent=2, sort_keys=False))


def progress(text: str) -> None:
    """Start a `Doing something... ` line; finish it with `echo('done')`."""
    sys.stdout.write(text + "... ")
    sys.stdout.flush()


def columns(rows: Iterable[Sequence[Any]], gap: str = "  ") -> None:
    rows = [["" if c is None else str(c) for c in row] for row in rows]
    if not rows:
        return
    widths = [max(len(r[i]) for r in rows if i < len(r)) for i in range(max(len(r) for r in rows))]
    for row in rows:
        cells = [c.ljust(widths[i]) for i, c in enumerate(row)]
        echo(gap.join(cells).rstrip())


def key_values(pairs: Iterable[tuple[str, Any]]) -> None:
    pairs = list(pairs)
    if not pairs:
        return
    width = max(len(k) for k, _ in pairs) + 1
    for k, v in pairs:
        echo(f"{(k + ':').ljust(width)} {'' if v is None else v}".rstrip())


def parse_time(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        t = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)


def ago(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"~ {seconds // size}{unit}"
    return f"~ {seconds}s"


def when(value: str | None) -> str:
    t = parse_time(value)
    if t is None:
        return ""
    age = (dt.datetime.now(dt.timezone.utc) - t).total_seconds()
    return f"{t.astimezone(dt.timezone.utc):%Y-%m-%d %H:%M:%S} UTC ({ago(max(age, 0))} ago)"


def human_size(n: int | None) -> str:
    if n is None:
        return "?"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"

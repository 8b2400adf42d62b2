"""Scheduler events go to the app's own log stream, so `unicloud logs` explains every deploy."""

from __future__ import annotations

from unicloud import logs


def event(r, app_name: str, line: str, *, dyno: str = "scheduler") -> None:
    print(f"scheduler: {app_name}: {line}", flush=True)
    try:
        logs.emit(r, app_name, "unicloud", dyno, line)
    except Exception as exc:  # logging must never stop a deploy
        print(f"scheduler: could not log to {app_name}: {exc}", flush=True)

"""Figures published elsewhere, shown in their own table and never mixed with our measurements."""

from __future__ import annotations

# (system, figure, source)
REFERENCE_FIGURES: list[tuple[str, str, str]] = [
    ("python:3.12-slim container image", "124–130 MB", "Docker Hub, official python image"),
    ("python:3.12-alpine container image", "48.7 MB", "Docker Hub, official python image"),
    ("Firecracker microVM", "≤125 ms to guest init; VMM ≤5 MiB memory overhead",
     "Firecracker specification (SPECIFICATION.md)"),
    ("Lupine Linux", "kernel from 4 MB, 23 ms boot, 21 MB minimum RAM",
     "Kuo et al., \"A Linux in Unikernel Clothing\", EuroSys 2020"),
    ("Unikraft", "images about 1–2 MB, 3–40 ms boot",
     "Kuenzer et al., \"Unikraft\", EuroSys 2021"),
    ("Fly.io machines", "about 300 ms to boot", "Fly.io Machines documentation"),
    ("Heroku", "slug ≤500 MB, compile ≤15 min, 60 s to bind $PORT, 1,500 log lines",
     "Heroku Dev Center, limits"),
    ("Dokku", "waits 10 s after deploy before switching; keeps old containers 60 s",
     "Dokku documentation, zero-downtime deploys"),
]

"""The rootfs as two layers: the runtime (what rarely changes) and the app (what every push does).

Compressing the whole rootfs at xz -9e takes 8-16 s, and an app-only change would pay it on
every push. So the archive is split: the runtime layer (interpreter, shared libraries, stdlib
zip, site-packages, init, /etc) and the app layer (the app's own files under its workdir). Each
is a complete newc archive in its own xz stream; the file is their concatenation, which the
kernel unpacks in order (runtime first, so the app layer's files land in its directories).
A compressed runtime layer is cached by the hash of its uncompressed bytes and the encoder, so
a push that changes only app code recompresses a few KB. The bytes are what a fresh build would
write (the cache stores exactly what the encoder returns), so images stay reproducible.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import posixpath
import time
from dataclasses import dataclass
from pathlib import Path

from unicloud.image import cpio
from unicloud.image.compression import compress_layer, encoder_fingerprint
from unicloud.image.contentcache import ContentCache

CACHE_BUDGET_BYTES = 512 << 20  # compressed runtime layers kept per machine
# The runtime layer's files carry a fixed time instead of the commit's, or every commit would
# make a new runtime layer. 1980-01-01T00:00:01Z, as Cloud Native Buildpacks stamp their layers;
# Python never reads it (all bytecode is unchecked-hash .pyc). App files keep the commit time.
RUNTIME_LAYER_MTIME = 315532801


@dataclass(frozen=True)
class Layer:
    name: str
    raw_size: int
    size: int
    sha256: str
    entries: int
    cached: bool

    def as_dict(self) -> dict:
        return {"name": self.name, "size": self.size, "uncompressed_size": self.raw_size,
                "sha256": self.sha256, "entries": self.entries}


def runtime_prefixes(manifest: dict) -> list[str]:
    """Paths under the workdir that belong to the runtime: each virtualenv (or other
    site-packages root) the manifest names, e.g. /app/.venv for
    /app/.venv/lib/python3.11/site-packages."""
    workdir = (manifest.get("workdir") or "/app").rstrip("/")
    out = set()
    for sp in manifest.get("site_packages", []):
        if sp.startswith(workdir + "/"):
            first = sp[len(workdir) + 1:].split("/", 1)[0]
            out.add(posixpath.join(workdir, first))
    return sorted(out)


def split(entries: list[cpio.CpioEntry], manifest: dict) -> tuple[list, list]:
    """(runtime entries, app entries). App entries are the workdir and what is under it,
    except the runtime prefixes; a directory stays in the runtime layer when any runtime entry
    lives beneath it, so every layer's parents exist by the time it is unpacked."""
    workdir = (manifest.get("workdir") or "/app").strip("/")
    runtime_dirs = [p.strip("/") for p in runtime_prefixes(manifest)]

    def under(path: str, top: str) -> bool:
        return path == top or path.startswith(top + "/")

    def app_owned(path: str) -> bool:
        return under(path, workdir) and not any(under(path, r) for r in runtime_dirs)

    runtime, app = [], []
    runtime_paths = {e.path.strip("/") for e in entries if not app_owned(e.path.strip("/"))}
    needed_dirs = set()
    for p in runtime_paths:
        parent = posixpath.dirname(p)
        while parent:
            needed_dirs.add(parent)
            parent = posixpath.dirname(parent)
    for e in entries:
        p = e.path.strip("/")
        if app_owned(p) and not (e.is_dir and p in needed_dirs):
            app.append(e)
        else:
            runtime.append(e)
    return runtime, app


class LayerCache(ContentCache):
    """Compressed runtime layers by content; shared by every app on the machine."""

    def __init__(self, root: Path, budget: int = CACHE_BUDGET_BYTES):
        super().__init__(root, suffix=".xz", budget=budget)


def _size(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e6 else f"{n / 1e3:.1f} KB"


def _archive(entries: list[cpio.CpioEntry]) -> bytes:
    buf = io.BytesIO()
    cpio.write_newc(buf, entries)
    return buf.getvalue()


def pack(entries: list[cpio.CpioEntry], manifest: dict, out: Path, *,
         cache: LayerCache | None = None, log=lambda line: None) -> list[Layer]:
    """Write the layered rootfs to `out`; the runtime layer comes from `cache` when it holds
    one with the same content."""
    runtime, app = split(entries, manifest)
    runtime = [dataclasses.replace(e, mtime=RUNTIME_LAYER_MTIME) for e in runtime]
    layers, chunks = [], []
    for name, members in (("runtime", runtime), ("app", app)):
        if not members:
            continue
        raw = _archive(members)
        key = hashlib.sha256(raw + encoder_fingerprint().encode()).hexdigest()
        data = cache.get(key) if cache is not None and name == "runtime" else None
        cached = data is not None
        if data is None:
            started = time.monotonic()
            data = compress_layer(raw)
            if cache is not None and name == "runtime":
                cache.put(key, data)
            log(f"image: {name} layer compressed in {time.monotonic() - started:.1f}s "
                f"({_size(len(raw))} -> {_size(len(data))})")
        else:
            log(f"image: {name} layer reused ({_size(len(raw))} -> {_size(len(data))}, "
                f"same content as an earlier build)")
        layers.append(Layer(name, len(raw), len(data), hashlib.sha256(data).hexdigest(),
                            len(members), cached))
        chunks.append(data)
    with open(out, "wb") as f:
        for data in chunks:
            f.write(data)  # xz streams are multiples of 4 bytes: the next starts aligned
    return layers

"""The rootfs in layers: system (same for every app on a stack), runtime (what the app's
dependencies decide) and app (what every push changes).

Compressing a whole rootfs at xz -9e takes 10-50 s, and an app-only change would pay it on every
push. So the archive is split; each layer is a complete newc archive in its own xz stream, and
the file is their concatenation, which the kernel unpacks in order. The compressed system and
runtime layers are cached by the hash of their uncompressed bytes and of the encoder: a push
that changes only app code recompresses a few KB, and a new app on a stack already used reuses
the system layer. The cache returns exactly what the encoder would, so images stay reproducible.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import posixpath
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from unicloud.image import cpio
from unicloud.image.compression import compress_layer, decompress, encoder_fingerprint
from unicloud.image.contentcache import ContentCache
from unicloud.image.store import ROOTFS_FILE

CACHE_BUDGET_BYTES = 512 << 20  # compressed system and runtime layers kept per machine
# The system and runtime layers' files carry a fixed time instead of the commit's, or every
# commit would make new layers. 1980-01-01T00:00:01Z, as Cloud Native Buildpacks stamp their
# layers; Python never reads it (all bytecode is unchecked-hash .pyc). App files keep the
# commit time.
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


LAYERS = ("system", "runtime", "app")  # in unpack order
CACHED_LAYERS = ("system", "runtime")


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


def split(entries: list[cpio.CpioEntry], manifest: dict,
          app_runtime: Iterable[str] = ()) -> dict[str, list[cpio.CpioEntry]]:
    """Entries by layer:

    - app: the workdir and what is under it, except the runtime prefixes (the virtualenv);
    - runtime: what this app's dependencies decide: the runtime prefixes and `app_runtime`
      (the pruned stdlib zip, the extension modules it needs, the image env);
    - system: the rest, which is the same for every app on the same stack (interpreter, shared
      libraries, CA certificates, /etc, /init), so its compressed form is shared between apps.

    A directory goes to the earliest layer holding anything beneath it, so its parents exist by
    the time any layer is unpacked."""
    workdir = (manifest.get("workdir") or "/app").strip("/")
    runtime_dirs = [p.strip("/") for p in runtime_prefixes(manifest)]
    app_runtime = {p.strip("/") for p in app_runtime}

    def under(path: str, top: str) -> bool:
        return path == top or path.startswith(top + "/")

    def layer_of(path: str) -> int:
        if path in app_runtime or any(under(path, r) for r in runtime_dirs):
            return 1
        return 2 if under(path, workdir) else 0

    index = {}
    for e in entries:
        p = e.path.strip("/")
        if not e.is_dir:
            index[p] = layer_of(p)
    earliest: dict[str, int] = {}
    for p, layer in index.items():
        parent = posixpath.dirname(p)
        while parent and earliest.get(parent, 3) > layer:
            earliest[parent] = layer
            parent = posixpath.dirname(parent)
    out: dict[str, list[cpio.CpioEntry]] = {name: [] for name in LAYERS}
    for e in entries:
        p = e.path.strip("/")
        layer = index[p] if not e.is_dir else earliest.get(p, layer_of(p))
        out[LAYERS[layer]].append(e)
    return out


class LayerCache(ContentCache):
    """Compressed system and runtime layers by content; shared by every app on the machine."""

    def __init__(self, root: Path, budget: int = CACHE_BUDGET_BYTES):
        super().__init__(root, suffix=".xz", budget=budget)


def _size(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e6 else f"{n / 1e3:.1f} KB"


def _archive(entries: list[cpio.CpioEntry]) -> bytes:
    buf = io.BytesIO()
    cpio.write_newc(buf, entries)
    return buf.getvalue()


def pack(entries: list[cpio.CpioEntry], manifest: dict, out: Path, *,
         app_runtime: Iterable[str] = (), cache: LayerCache | None = None,
         log=lambda line: None) -> list[Layer]:
    """Write the layered rootfs to `out`. The system and runtime layers come from `cache` when
    it holds one with the same content; the layers still to compress are compressed at the
    same time (liblzma releases the GIL), so a first build waits for the largest only."""
    members = split(entries, manifest, app_runtime)
    raws: dict[str, bytes] = {}
    for name in LAYERS:
        if not members[name]:
            continue
        if name in CACHED_LAYERS:
            members[name] = [dataclasses.replace(e, mtime=RUNTIME_LAYER_MTIME)
                             for e in members[name]]
        raws[name] = _archive(members[name])
    keys = {name: hashlib.sha256(raw + encoder_fingerprint().encode()).hexdigest()
            for name, raw in raws.items()}
    compressed: dict[str, bytes] = {}
    for name in raws:
        if cache is not None and name in CACHED_LAYERS:
            hit = cache.get(keys[name])
            if hit is not None:
                compressed[name] = hit
                log(f"image: {name} layer reused ({_size(len(raws[name]))} -> {_size(len(hit))},"
                    f" same content as an earlier build)")
    todo = [name for name in raws if name not in compressed]
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=max(1, min(len(todo), os.cpu_count() or 1))) as pool:
        for name, data in zip(todo, pool.map(lambda n: compress_layer(raws[n]), todo)):
            compressed[name] = data
            if cache is not None and name in CACHED_LAYERS:
                cache.put(keys[name], data)
            log(f"image: {name} layer compressed ({_size(len(raws[name]))} -> "
                f"{_size(len(data))})")
    if todo:
        log(f"image: {', '.join(todo)} compressed in {time.monotonic() - started:.1f}s")
    layers = [Layer(name, len(raws[name]), len(compressed[name]),
                    hashlib.sha256(compressed[name]).hexdigest(), len(members[name]),
                    name not in todo) for name in raws]
    with open(out, "wb") as f:
        for name in raws:
            f.write(compressed[name])  # xz streams are multiples of 4 bytes: the next starts aligned
    return layers


def read_layer(image_dir: Path, name: str) -> bytes | None:
    """One layer's archive, decompressed alone from its offset in the rootfs, or None when the
    image's manifest lists no such layer (or the file is shorter than the manifest says)."""
    try:
        layers = json.loads((Path(image_dir) / "manifest.json").read_text())["rootfs"]["layers"]
        names = [layer["name"] for layer in layers]
        i = names.index(name)
        offset, size = sum(int(layer["size"]) for layer in layers[:i]), int(layers[i]["size"])
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None
    rootfs = Path(image_dir) / ROOTFS_FILE
    with open(rootfs, "rb") as f:
        f.seek(offset)
        blob = f.read(size)
    if len(blob) != size:
        return None
    return decompress(blob, name=f"{rootfs} ({name} layer)")

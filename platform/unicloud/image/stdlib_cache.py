"""Reuse of the stdlib pruner's two repeated costs: parsing modules and compiling them.

Every build of a Python app parses 500-800 modules for their imports (1.7-2.8 s) and compiles
200-500 of them to bytecode (0.5-1 s), although between two pushes almost none of them changed.
Both results depend only on the interpreter and the file's bytes (and, for bytecode, the path
baked into it and the optimization level), so they are cached under those keys per machine.
Without a cache directory every call does the work, as before.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

from unicloud.image.contentcache import ContentCache
from unicloud.image.probe import run_probe
from unicloud.image.rootpath import host_path, resolve
from unicloud.image.store import file_sha256

PYC_BUDGET_BYTES = 256 << 20
PARSE_FORMAT = 2  # the shape of stdlib_probe.import_edges' answer
MAX_PARSES = 50_000  # per interpreter; a parse is ~100 bytes of JSON
META_BUDGET_BYTES = 64 << 20


def interpreter_key(root: Path, interpreter: str) -> str:
    """The interpreter binary's hash: its grammar and bytecode format come with it."""
    return file_sha256(host_path(root, resolve(root, interpreter).path))


class StdlibCache:
    def __init__(self, cache_dir: Path | None, root: Path, interpreter: str):
        self.root, self.interpreter = root, interpreter
        enabled = cache_dir is not None
        self.key = interpreter_key(root, interpreter) if enabled else ""
        base = Path(cache_dir) / "stdlib" if enabled else None
        self.pycs = ContentCache(base / "pyc", suffix=".pyc", budget=PYC_BUDGET_BYTES) \
            if enabled else None
        # per interpreter: the parses (one JSON document) and the bytecode cache tag
        self.meta = ContentCache(base / "meta", suffix=".bin", budget=META_BUDGET_BYTES) \
            if enabled else None

    def _meta_key(self, what: str) -> str:
        return hashlib.sha256(f"{what}\0{self.key}".encode()).hexdigest()

    # ---- import edges, as the scan probe parses them
    def known_parses(self) -> dict:
        data = self.meta.get(self._meta_key(f"parses-v{PARSE_FORMAT}")) if self.meta else None
        try:
            return json.loads(data) if data else {}
        except ValueError:
            return {}

    def remember_parses(self, known: dict, parsed: dict) -> None:
        if self.meta is None or not parsed:
            return
        merged = {**known, **parsed}
        if len(merged) > MAX_PARSES:
            merged = dict(list(merged.items())[-MAX_PARSES:])
        self.meta.put(self._meta_key(f"parses-v{PARSE_FORMAT}"),
                      json.dumps(merged, separators=(",", ":")).encode())

    # ---- bytecode
    def compile(self, pairs: list[tuple[str, str]], optimize: int = 0
                ) -> tuple[dict[str, bytes], list, str]:
        """Bytecode for each (source in the root, path it is compiled as); returns
        ({source: pyc bytes}, failures, the interpreter's cache tag). A source listed twice
        (two names for one file, like sysconfigdata's) is compiled once, as its first path."""
        out: dict[str, bytes] = {}
        keys: dict[str, str] = {}
        missing = []
        unique: dict[str, str] = {}
        for src, display in pairs:
            unique.setdefault(src, display)
        for src, display in unique.items():
            if self.pycs is None:
                missing.append([src, display])
                continue
            data = host_path(self.root, src).read_bytes()
            key = hashlib.sha256(f"{self.key}\0{optimize}\0{display}\0".encode() + data).hexdigest()
            hit = self.pycs.get(key)
            if hit is None:
                keys[src] = key
                missing.append([src, display])
            else:
                out[src] = hit
        tag = self._cached_tag()
        failed: list = []
        if missing or tag is None:
            req = {"mode": "compile", "files": missing}
            if optimize:
                req["optimize"] = optimize
            answer = run_probe(self.root, self.interpreter, req)
            failed, tag = answer["failed"], answer["cache_tag"]
            for src, b64 in answer["pyc"].items():
                out[src] = base64.b64decode(b64)
                if self.pycs is not None and src in keys:
                    self.pycs.put(keys[src], out[src], trim=False)
            if self.pycs is not None:
                self.pycs.trim()
                self._remember_tag(tag)
        return out, failed, tag

    def _cached_tag(self) -> str | None:
        data = self.meta.get(self._meta_key("cache-tag")) if self.meta else None
        return (data.decode().strip() or None) if data else None

    def _remember_tag(self, tag: str) -> None:
        self.meta.put(self._meta_key("cache-tag"), tag.encode())

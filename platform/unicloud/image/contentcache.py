"""A directory of blobs named by the hash of what produced them, trimmed to a byte budget.

Image builds repeat expensive, deterministic work on unchanged inputs (compressing the runtime
layer, parsing and compiling the same stdlib modules). A cache keyed by the full input gives
back exactly the bytes the work would produce, so it can never make two builds differ.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


class ContentCache:
    """Blobs by key (a hex digest); the least recently used go first when over `budget`."""

    def __init__(self, root: Path, *, suffix: str, budget: int):
        self.root = Path(root)
        self.suffix = suffix
        self.budget = budget

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}{self.suffix}"

    def get(self, key: str) -> bytes | None:
        path = self._path(key)
        try:
            data = path.read_bytes()
            os.utime(path)  # recently used: the last to go when the cache is trimmed
        except OSError:
            return None
        return data

    def file(self, key: str) -> Path | None:
        """The blob's path, for callers that copy or stream it, or None."""
        path = self._path(key)
        try:
            os.utime(path)
        except OSError:
            return None
        return path

    def put(self, key: str, data: bytes, *, trim: bool = True) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)  # concurrent writers of one key write the same bytes
        if trim:
            self.trim()

    def trim(self) -> None:
        files = []
        for p in self.root.glob(f"*/*{self.suffix}"):
            try:
                st = p.stat()
            except OSError:
                continue
            files.append((st.st_mtime, st.st_size, p))
        total = sum(size for _, size, _ in files)
        for _, size, p in sorted(files):
            if total <= self.budget:
                break
            p.unlink(missing_ok=True)
            total -= size

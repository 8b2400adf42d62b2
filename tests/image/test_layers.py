"""The rootfs in two layers: what goes where, the runtime layer cache, and reproducibility."""

from __future__ import annotations

import lzma

import pytest

from unicloud.image import cpio
from unicloud.image.compression import (MAX_DICT, MIN_DICT, CompressionError, decompress,
                                        dict_size, read_rootfs_bytes)
from unicloud.image.layers import RUNTIME_LAYER_MTIME, LayerCache, pack, split

PY_MANIFEST = {"workdir": "/app", "site_packages": ["/app/.venv/lib/python3.11/site-packages"]}


def entries(app_source: bytes = b"print('v1')\n") -> list[cpio.CpioEntry]:
    return [
        cpio.directory("app"),
        cpio.directory("app/.venv"),
        cpio.regular("app/.venv/lib/python3.11/site-packages/flask.py", b"# flask\n" * 500),
        cpio.regular("app/app.py", app_source, mtime=1700000000),
        cpio.directory("app/static"),
        cpio.regular("app/static/style.css", b"body{}\n", mtime=1700000000),
        cpio.directory("usr"),
        cpio.regular("usr/bin/python3.11", bytes(range(256)) * 400, perm=0o755),
        cpio.regular("init", b"\x7fELF init", perm=0o755),
    ]


def names(members) -> list[str]:
    return [e.path for e in members]


def test_split_puts_the_apps_own_files_last():
    runtime, app = split(entries(), PY_MANIFEST)
    # /app stays in the runtime layer: /app/.venv, unpacked first, needs it
    assert names(runtime) == ["app", "app/.venv", "app/.venv/lib/python3.11/site-packages/flask.py",
                              "usr", "usr/bin/python3.11", "init"]
    assert names(app) == ["app/app.py", "app/static", "app/static/style.css"]


def test_without_a_virtualenv_the_workdir_is_all_app():
    runtime, app = split(entries(), {"workdir": "/app", "site_packages": []})
    assert "app" in names(app) and "app/.venv" in names(app)
    assert names(runtime) == ["usr", "usr/bin/python3.11", "init"]


def test_an_app_only_change_reuses_the_runtime_layer(tmp_path):
    cache = LayerCache(tmp_path / "cache")
    first = pack(entries(), PY_MANIFEST, tmp_path / "v1.xz", cache=cache)
    second = pack(entries(b"print('v2')\n"), PY_MANIFEST, tmp_path / "v2.xz", cache=cache)
    assert [(layer.name, layer.cached) for layer in first] == [("runtime", False), ("app", False)]
    assert [(layer.name, layer.cached) for layer in second] == [("runtime", True), ("app", False)]
    assert first[0].sha256 == second[0].sha256 and first[1].sha256 != second[1].sha256
    # what the cache hands back is byte for byte what a build without it writes
    fresh = pack(entries(b"print('v2')\n"), PY_MANIFEST, tmp_path / "fresh.xz", cache=None)
    assert (tmp_path / "fresh.xz").read_bytes() == (tmp_path / "v2.xz").read_bytes()
    assert [layer.as_dict() for layer in fresh] == [layer.as_dict() for layer in second]


def test_layers_are_concatenated_xz_streams_of_complete_archives(tmp_path):
    layers = pack(entries(), PY_MANIFEST, tmp_path / "rootfs.cpio.xz")
    data = (tmp_path / "rootfs.cpio.xz").read_bytes()
    assert len(data) == sum(layer.size for layer in layers) and len(data) % 4 == 0
    runtime_stream = data[:layers[0].size]
    runtime = cpio.read_newc(lzma.decompress(runtime_stream, format=lzma.FORMAT_XZ))
    assert {e.mtime for e in runtime} == {RUNTIME_LAYER_MTIME}
    everything = {e.path: e for e in cpio.read_newc(read_rootfs_bytes(tmp_path / "rootfs.cpio.xz"))}
    assert everything["app/app.py"].data == b"print('v1')\n"
    assert everything["app/app.py"].mtime == 1700000000
    assert set(everything) == set(names(entries()))


def test_the_cache_stays_within_its_budget(tmp_path):
    cache = LayerCache(tmp_path / "cache", budget=10_000)
    for i in range(5):
        cache.put(f"{i:064x}", bytes([i]) * 4_000)
    kept = sorted(p.name for p in (tmp_path / "cache").glob("*/*.xz"))
    assert len(kept) == 2 and cache.get(f"{4:064x}") == bytes([4]) * 4_000
    assert cache.get(f"{0:064x}") is None


def test_dictionary_covers_the_layer_within_bounds():
    assert dict_size(0) == MIN_DICT
    assert dict_size(15_000_000) == 16 << 20
    assert dict_size(300_000_000) == MAX_DICT


def test_a_format_1_rootfs_gets_a_clear_error():
    with pytest.raises(CompressionError, match="not an xz file.*format 1 used zstd"):
        decompress(b"\x28\xb5\x2f\xfd" + b"\0" * 20, name="rootfs.cpio.zst")
    with pytest.raises(CompressionError, match="corrupt"):
        decompress(b"\xfd7zXZ\x00" + b"\0" * 30)

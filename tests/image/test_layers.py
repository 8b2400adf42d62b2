"""The rootfs in two layers: what goes where, the runtime layer cache, and reproducibility."""

from __future__ import annotations

import lzma

import pytest

from unicloud.image import cpio
from unicloud.image.compression import (MAX_DICT, MIN_DICT, CompressionError, decompress,
                                        dict_size, read_rootfs_bytes)
from unicloud.image.layers import RUNTIME_LAYER_MTIME, LayerCache, pack, read_layer, split

PY_MANIFEST = {"workdir": "/app", "site_packages": ["/app/.venv/lib/python3.11/site-packages"]}


STDLIB_ZIP = "/usr/lib/python311.zip"


def entries(app_source: bytes = b"print('v1')\n", stdlib: bytes = b"PK zip") -> list[cpio.CpioEntry]:
    return [
        cpio.directory("app"),
        cpio.directory("app/.venv"),
        cpio.regular("app/.venv/lib/python3.11/site-packages/flask.py", b"# flask\n" * 500),
        cpio.regular("app/app.py", app_source, mtime=1700000000),
        cpio.directory("app/static"),
        cpio.regular("app/static/style.css", b"body{}\n", mtime=1700000000),
        cpio.directory("usr"),
        cpio.regular("usr/bin/python3.11", bytes(range(256)) * 400, perm=0o755),
        cpio.directory("usr/lib"),
        cpio.regular("usr/lib/python311.zip", stdlib),
        cpio.regular("init", b"\x7fELF init", perm=0o755),
    ]


def names(members) -> list[str]:
    return [e.path for e in members]


def test_split_puts_shared_files_first_and_the_apps_own_last():
    layers = split(entries(), PY_MANIFEST, app_runtime=[STDLIB_ZIP])
    assert names(layers["system"]) == ["usr", "usr/bin/python3.11", "init"]
    # a directory goes with the earliest layer under it: /app/.venv, unpacked before the app
    # layer, needs /app; /usr/lib holds only the runtime's stdlib zip here
    assert names(layers["runtime"]) == ["app", "app/.venv",
                                        "app/.venv/lib/python3.11/site-packages/flask.py",
                                        "usr/lib", "usr/lib/python311.zip"]
    assert names(layers["app"]) == ["app/app.py", "app/static", "app/static/style.css"]


def test_without_a_virtualenv_the_workdir_is_all_app():
    layers = split(entries(), {"workdir": "/app", "site_packages": []})
    assert "app" in names(layers["app"]) and "app/.venv" in names(layers["app"])
    assert names(layers["runtime"]) == []
    assert "usr/lib/python311.zip" in names(layers["system"])


def test_an_app_only_change_reuses_the_system_and_runtime_layers(tmp_path):
    cache = LayerCache(tmp_path / "cache")
    kw = dict(app_runtime=[STDLIB_ZIP], cache=cache)
    first = pack(entries(), PY_MANIFEST, tmp_path / "v1.xz", **kw)
    second = pack(entries(b"print('v2')\n"), PY_MANIFEST, tmp_path / "v2.xz", **kw)
    assert [(layer.name, layer.cached) for layer in first] == \
        [("system", False), ("runtime", False), ("app", False)]
    assert [(layer.name, layer.cached) for layer in second] == \
        [("system", True), ("runtime", True), ("app", False)]
    assert first[1].sha256 == second[1].sha256 and first[2].sha256 != second[2].sha256
    # another app on the same stack (other dependencies) shares the system layer only
    third = pack(entries(stdlib=b"PK other zip"), PY_MANIFEST, tmp_path / "v3.xz", **kw)
    assert [(layer.name, layer.cached) for layer in third] == \
        [("system", True), ("runtime", False), ("app", False)]
    # what the cache hands back is byte for byte what a build without it writes
    fresh = pack(entries(b"print('v2')\n"), PY_MANIFEST, tmp_path / "fresh.xz",
                 app_runtime=[STDLIB_ZIP], cache=None)
    assert (tmp_path / "fresh.xz").read_bytes() == (tmp_path / "v2.xz").read_bytes()
    assert [layer.as_dict() for layer in fresh] == [layer.as_dict() for layer in second]


def test_layers_are_concatenated_xz_streams_of_complete_archives(tmp_path):
    layers = pack(entries(), PY_MANIFEST, tmp_path / "rootfs.cpio.xz", app_runtime=[STDLIB_ZIP])
    data = (tmp_path / "rootfs.cpio.xz").read_bytes()
    assert len(data) == sum(layer.size for layer in layers) and len(data) % 4 == 0
    for layer, start in ((layers[0], 0), (layers[1], layers[0].size)):
        shared = cpio.read_newc(lzma.decompress(data[start:start + layer.size],
                                                format=lzma.FORMAT_XZ))
        assert len(shared) == layer.entries and {e.mtime for e in shared} == {RUNTIME_LAYER_MTIME}
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


def test_one_layer_reads_back_alone(tmp_path):
    import json

    layers = pack(entries(), PY_MANIFEST, tmp_path / "rootfs.cpio.xz", app_runtime=[STDLIB_ZIP])
    (tmp_path / "manifest.json").write_text(json.dumps(
        {"rootfs": {"layers": [layer.as_dict() for layer in layers]}}))
    runtime = cpio.read_newc(read_layer(tmp_path, "runtime"))
    assert [e.path for e in runtime] == sorted(names(split(entries(), PY_MANIFEST,
                                                           [STDLIB_ZIP])["runtime"]))
    assert read_layer(tmp_path, "nonesuch") is None

"""The app's declared health checks are read from a real layered rootfs (image format 2)."""

from __future__ import annotations

import json

from unicloud.image import cpio, layers
from unicloud.image.store import ROOTFS_FILE
from unicloud.scheduler.health import declared_files, spec_from_manifest

RUNTIME_MANIFEST = {"workdir": "/app", "site_packages": ["/app/.venv/lib/python3.11/site-packages"]}
CHECKS = b"WAIT=1\n/health ok\n"


def write_image(image_dir, *, with_app_files: bool = True) -> list[layers.Layer]:
    entries = [
        cpio.directory("usr"), cpio.directory("usr/bin"), cpio.regular("usr/bin/python3", b"\x7fELF" + b"x" * 4096),
        cpio.directory("app"), cpio.directory("app/.venv"),
        cpio.regular("app/.venv/pyvenv.cfg", b"home = /usr/bin\n"),
    ]
    if with_app_files:
        entries += [cpio.regular("app/app.py", b"print('hi')\n"), cpio.regular("app/CHECKS", CHECKS),
                    cpio.regular("app/app.json", b'{"name": "x"}')]
    image_dir.mkdir()
    packed = layers.pack(entries, RUNTIME_MANIFEST, image_dir / ROOTFS_FILE)
    (image_dir / "manifest.json").write_text(json.dumps(
        {"workdir": "/app", "rootfs": {"layers": [layer.as_dict() for layer in packed]}}))
    return packed


def test_checks_come_from_the_app_layer_alone(tmp_path):
    image = tmp_path / "img"
    packed = write_image(image)
    assert len(packed) > 1 and packed[-1].name == "app"
    # Spoil the first layer: the checks are still found, so only the app layer was read.
    rootfs = image / ROOTFS_FILE
    data = bytearray(rootfs.read_bytes())
    data[100:200] = b"\0" * 100
    rootfs.write_bytes(bytes(data))
    files = declared_files(str(image), "/app")
    assert files == {"CHECKS": CHECKS, "app.json": b'{"name": "x"}'}
    spec = spec_from_manifest({}, files)
    assert spec.source == "CHECKS" and spec.initial_delay == 1 and spec.checks[0].path == "/health"


def test_without_a_layer_list_the_whole_rootfs_is_read(tmp_path):
    image = tmp_path / "img"
    write_image(image)
    manifest = json.loads((image / "manifest.json").read_text())
    del manifest["rootfs"]
    (image / "manifest.json").write_text(json.dumps(manifest))
    assert declared_files(str(image), "/app") == {"CHECKS": CHECKS, "app.json": b'{"name": "x"}'}


def test_an_image_without_app_files_declares_nothing(tmp_path):
    image = tmp_path / "img"
    packed = write_image(image, with_app_files=False)
    assert "app" not in [layer.name for layer in packed]
    assert declared_files(str(image), "/app") == {}

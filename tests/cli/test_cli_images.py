"""images:inspect and images:export on a real image made by the image builder."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest

from tests.api.conftest import deploy_release
from tests.image.conftest import HELLO_C, compile_c, make_static_root


@pytest.fixture(scope="module")
def real_image(tmp_path_factory):
    """A small static-binary image (the kernel is stand-in bytes: nothing boots it here)."""
    from unicloud.image.builder import build_image
    from unicloud.image.init.build import ensure_init
    from unicloud.image.store import ImageStore

    base = tmp_path_factory.mktemp("image")
    hello = compile_c(base / "hello", HELLO_C)
    kernel = base / "bzImage"
    kernel.write_bytes(b"not-a-kernel\0" * 4096)
    root, manifest = make_static_root(base, hello)
    return build_image(root, manifest, store=ImageStore(base / "store"), kernel=kernel, init=ensure_init(),
                       log=lambda line: None)


def install(cli, record) -> str:
    """Put the image in the platform's store and release it as v1 of a new app."""
    hex_digest = record.digest.split(":")[-1]
    shutil.copytree(record.path, cli.settings.images_dir / hex_digest)
    cli.ok("create", "imgapp")
    deploy_release(cli.settings, "imgapp", digest=record.digest)
    return hex_digest


def test_inspect_text_and_json(cli, real_image):
    install(cli, real_image)
    data = json.loads(cli.ok("images:inspect", "-a", "imgapp", "--json"))
    assert data["audit"]["passed"] is True
    assert data["release"] == 1 and data["app"] == "imgapp"
    assert data["sizes"]["total"] == real_image.manifest["total_size"]
    assert {d["name"] for d in data["downloads"]} == {"kernel", "rootfs.cpio.xz", "manifest.json", "sbom.cdx.json"}

    text = cli.ok("images:inspect", "v1", "-a", "imgapp").splitlines()
    assert text[0] == "=== imgapp v1 image"
    assert any(line.startswith("Digest:") and real_image.digest.split(":")[-1] in line for line in text)
    assert any(line.startswith("Total:") and "KiB" in line for line in text)
    assert any(line.startswith("Compression:") and "xz" in line for line in text)
    layers = [line for line in text if line.startswith("Layer ")]
    assert [line.split(":")[0] for line in layers] == ["Layer system", "Layer runtime", "Layer app"]
    assert all("unpacked" in line and "entries" in line for line in layers)
    assert f"sha256 kernel: {real_image.manifest['kernel']['sha256']}" in text
    audit = next(line for line in text if line.startswith("Audit:"))
    assert audit.startswith("Audit: passed (") and "0 violations" in audit
    assert any(line.startswith("SBOM: ") and "files" in line for line in text)


def test_export_matches_the_store(cli, real_image, tmp_path):
    hex_digest = install(cli, real_image)
    out = tmp_path / "export"
    cli.ok("images:export", "-a", "imgapp", "-o", str(out))
    for name in ("kernel", "rootfs.cpio.xz", "manifest.json", "sbom.cdx.json"):
        stored = cli.settings.images_dir / hex_digest / name
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == hashlib.sha256(stored.read_bytes()).hexdigest()
    from unicloud.image.store import verify_image_dir

    assert verify_image_dir(out)["digest"] == json.loads((out / "manifest.json").read_text())["digest"]


def test_a_tampered_image_is_reported_not_served_as_fine(cli, real_image):
    hex_digest = install(cli, real_image)
    (cli.settings.images_dir / hex_digest / "kernel").write_bytes(b"tampered")
    line = cli.fails("images:inspect", "-a", "imgapp")
    assert "failed verification" in line and "kernel" in line

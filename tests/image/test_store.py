"""Content-addressed store on disk and on S3 (a real moto server over HTTP)."""

from __future__ import annotations

import os
import shutil

import boto3
import pytest

from tests.image.conftest import make_static_root
from tests.support import free_port
from unicloud.image.builder import build_image
from unicloud.image.store import ImageNotFound, ImageStore, ImageStoreError, S3ImageStore


@pytest.fixture
def two_images(tmp_path, static_hello, test_kernel, init_binary):
    """Two different images, built into a source store."""
    src = ImageStore(tmp_path / "src")
    recs = []
    for name in ("web", "worker"):
        root, manifest = make_static_root(tmp_path / name, static_hello, name=name)
        recs.append(build_image(root, manifest, store=src, kernel=test_kernel, init=init_binary,
                                log=lambda m: None))
    return src, recs


def copy_out(store: ImageStore, digest: str, dest) -> str:
    shutil.copytree(store.get(digest), dest)
    for p in [dest, *dest.iterdir()]:
        os.chmod(p, 0o755 if p.is_dir() else 0o644)
    return dest


def test_put_get_exists_gc(two_images, tmp_path):
    src, (a, b) = two_images
    assert a.digest != b.digest
    assert src.list() == sorted([a.digest, b.digest])
    store = ImageStore(tmp_path / "dst")
    assert store.put(copy_out(src, a.digest, tmp_path / "x")) == a.digest
    assert store.exists(a.digest) and store.exists("sha256:" + a.digest)
    assert not store.exists(b.digest)
    assert (store.get(a.digest) / "kernel").read_bytes() == (a.path / "kernel").read_bytes()
    assert store.put(copy_out(src, a.digest, tmp_path / "y")) == a.digest  # idempotent
    assert not (tmp_path / "y").exists()
    store.put(copy_out(src, b.digest, tmp_path / "z"))
    assert store.gc({b.digest}) == [a.digest]
    assert store.list() == [b.digest]
    with pytest.raises(ImageNotFound):
        store.get(a.digest)
    with pytest.raises(ImageStoreError, match="not an image digest"):
        store.get("../etc")


def test_put_rejects_tampered_image(two_images, tmp_path):
    src, (a, _) = two_images
    bad = copy_out(src, a.digest, tmp_path / "bad")
    with open(bad / "rootfs.cpio.xz", "ab") as f:
        f.write(b"extra")
    store = ImageStore(tmp_path / "dst")
    with pytest.raises(ImageStoreError, match="rootfs.cpio.xz: sha256"):
        store.put(bad)
    assert store.list() == []


def test_a_format_1_image_is_refused_with_what_to_do(two_images, tmp_path):
    src, (a, _) = two_images
    old = copy_out(src, a.digest, tmp_path / "old")
    (old / "rootfs.cpio.xz").rename(old / "rootfs.cpio.zst")
    with pytest.raises(ImageStoreError, match=r"format 1 \(rootfs.cpio.zst\).*push the app again"):
        ImageStore(tmp_path / "dst").put(old)


@pytest.fixture
def moto_s3():
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    kw = dict(endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
              aws_access_key_id="test", aws_secret_access_key="test")
    client = boto3.client("s3", **kw)
    client.create_bucket(Bucket="unicloud-images")
    yield client
    server.stop()


def test_s3_round_trip_with_multipart(moto_s3, tmp_path, static_hello, init_binary):
    big_kernel = tmp_path / "bzImage"
    big_kernel.write_bytes(os.urandom(S3ImageStore.MULTIPART_THRESHOLD * 2 + 12345))
    root, manifest = make_static_root(tmp_path / "app", static_hello)
    host_a = S3ImageStore("unicloud-images", local=ImageStore(tmp_path / "host-a"),
                          client=moto_s3)
    rec = build_image(root, manifest, store=host_a.local, kernel=big_kernel, init=init_binary,
                      log=lambda m: None)
    host_a.upload(rec.digest)
    head = moto_s3.head_object(Bucket="unicloud-images", Key=f"images/{rec.digest}/kernel")
    assert head["ETag"].strip('"').endswith("-3")  # uploaded in 3 parts
    assert host_a.list() == [rec.digest]

    host_b = S3ImageStore("unicloud-images", local=ImageStore(tmp_path / "host-b"),
                          client=moto_s3)
    assert host_b.exists(rec.digest) and not host_b.local.exists(rec.digest)
    path = host_b.get(rec.digest)
    for name in ("kernel", "rootfs.cpio.xz", "manifest.json", "sbom.cdx.json"):
        assert (path / name).read_bytes() == (rec.path / name).read_bytes()

    assert host_b.gc(set()) == [rec.digest]
    assert host_b.list() == [] and not host_b.exists(rec.digest)
    with pytest.raises(ImageNotFound):
        host_b.get(rec.digest)

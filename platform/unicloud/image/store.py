"""Content-addressed image store: `<digest-hex>/{kernel,rootfs.cpio.xz,manifest.json,sbom.cdx.json}`.

An image directory appears atomically (rename of a fully written staging directory), is
verified against its own manifest before it is accepted, and is never modified afterwards:
releases point at digests, so a rollback is a lookup, not a rebuild.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

from unicloud.config import Settings

ROOTFS_FILE = "rootfs.cpio.xz"
IMAGE_FILES = ("kernel", ROOTFS_FILE, "sbom.cdx.json", "manifest.json")  # manifest.json last
LEGACY_ROOTFS_FILE = "rootfs.cpio.zst"  # image format 1
_DIGEST = re.compile(r"^(?:sha256:)?([0-9a-f]{64})$")


class ImageStoreError(RuntimeError):
    """The store or an image in it is inconsistent."""


class ImageNotFound(ImageStoreError, KeyError):
    """No image with that digest."""


def normalise_digest(digest: str) -> str:
    m = _DIGEST.match(digest or "")
    if not m:
        raise ImageStoreError(f"not an image digest (64 hex digits, optional 'sha256:'): "
                              f"{digest!r}")
    return m.group(1)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def canonical_json(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def manifest_digest(manifest: dict) -> str:
    """sha256 over the manifest without its own digest field. The manifest holds the kernel,
    rootfs and SBOM hashes, so this covers every byte of the image and no timestamps."""
    body = {k: v for k, v in manifest.items() if k != "digest"}
    return hashlib.sha256(canonical_json(body)).hexdigest()


def verify_image_dir(path: Path) -> dict:
    """Check an image directory against its manifest; return the manifest."""
    if (path / LEGACY_ROOTFS_FILE).is_file() and not (path / ROOTFS_FILE).is_file():
        raise ImageStoreError(f"{path}: image format 1 ({LEGACY_ROOTFS_FILE}) is no longer "
                              f"booted; push the app again (or `git commit --allow-empty`) to "
                              f"rebuild it")
    for name in IMAGE_FILES:
        if not (path / name).is_file():
            raise ImageStoreError(f"{path}: missing {name}")
    try:
        manifest = json.loads((path / "manifest.json").read_text())
    except ValueError as exc:
        raise ImageStoreError(f"{path}/manifest.json is not JSON: {exc}") from exc
    digest = manifest_digest(manifest)
    if manifest.get("digest") != digest:
        raise ImageStoreError(f"{path}: manifest digest {manifest.get('digest')} != {digest}")
    for name, key in (("kernel", "kernel"), (ROOTFS_FILE, "rootfs"),
                      ("sbom.cdx.json", "sbom")):
        want = manifest.get(key, {}).get("sha256")
        got = file_sha256(path / name)
        if want != got:
            raise ImageStoreError(f"{path}/{name}: sha256 {got} does not match manifest {want}")
    return manifest


class ImageStore:
    """Images on this host, under `Settings.images_dir` by default."""

    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root is not None else Settings.from_env().images_dir
        self.root.mkdir(parents=True, exist_ok=True)

    def staging_dir(self) -> Path:
        """A scratch directory on the store's filesystem, so `put` can rename it into place."""
        return Path(tempfile.mkdtemp(prefix=".staging-", dir=self.root))

    def path(self, digest: str) -> Path:
        return self.root / normalise_digest(digest)

    def exists(self, digest: str) -> bool:
        return (self.path(digest) / "manifest.json").is_file()

    def get(self, digest: str) -> Path:
        p = self.path(digest)
        if not (p / "manifest.json").is_file():
            raise ImageNotFound(f"no image {normalise_digest(digest)} in {self.root}")
        return p

    def manifest(self, digest: str) -> dict:
        return json.loads((self.get(digest) / "manifest.json").read_text())

    def list(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir()
                      if _DIGEST.match(p.name) and (p / "manifest.json").is_file())

    def put(self, tmpdir: Path) -> str:
        """Verify `tmpdir` and move it into place; return the digest. Idempotent: putting an
        image that is already stored discards `tmpdir`."""
        tmpdir = Path(tmpdir)
        digest = verify_image_dir(tmpdir)["digest"]
        final = self.root / digest
        if final.exists():
            shutil.rmtree(tmpdir)
            return digest
        if tmpdir.parent.resolve() != self.root.resolve() or \
                os.stat(tmpdir).st_dev != os.stat(self.root).st_dev:
            staging = self.staging_dir()
            for name in IMAGE_FILES:
                shutil.copy2(tmpdir / name, staging / name)
            shutil.rmtree(tmpdir)
            tmpdir = staging
        for name in IMAGE_FILES:
            os.chmod(tmpdir / name, 0o444)
        os.chmod(tmpdir, 0o755)
        try:
            os.rename(tmpdir, final)
        except OSError:
            if not final.exists():
                raise
            shutil.rmtree(tmpdir)  # another writer won the race with the same content
        return digest

    def gc(self, keep: set[str], *, min_age: float = 0.0) -> list[str]:
        """Remove every image not in `keep` (and stale staging dirs); return removed digests.

        Anything younger than `min_age` seconds is left alone: another build may be staging it,
        or may have stored it without having recorded it in the database yet."""
        keep = {normalise_digest(d) for d in keep}
        cutoff = time.time() - min_age
        removed = []
        for p in sorted(self.root.iterdir()):
            if min_age and p.stat().st_mtime > cutoff:
                continue
            if p.name.startswith(".staging-"):
                shutil.rmtree(p, ignore_errors=True)
            elif _DIGEST.match(p.name) and p.name not in keep:
                shutil.rmtree(p)
                removed.append(p.name)
        return removed


class S3ImageStore:
    """The same layout under `images/<digest>/` in an S3 bucket, for several hypervisor hosts.

    The manifest is uploaded last, so an image whose manifest is visible is complete. Local
    copies are kept in an `ImageStore`, which is what the hypervisor boots from."""

    MULTIPART_THRESHOLD = 8 * 1024 * 1024

    def __init__(self, bucket: str, *, local: ImageStore, prefix: str = "images/",
                 client=None, **client_kwargs):
        import boto3
        from boto3.s3.transfer import TransferConfig

        self.bucket = bucket
        self.prefix = prefix if prefix.endswith("/") else prefix + "/"
        self.local = local
        self.client = client or boto3.client("s3", **client_kwargs)
        self.transfer = TransferConfig(multipart_threshold=self.MULTIPART_THRESHOLD,
                                       multipart_chunksize=self.MULTIPART_THRESHOLD)

    def _key(self, digest: str, name: str) -> str:
        return f"{self.prefix}{normalise_digest(digest)}/{name}"

    def exists(self, digest: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(digest, "manifest.json"))
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise

    def put(self, tmpdir: Path) -> str:
        """Upload a verified image directory, then keep it in the local store too."""
        digest = verify_image_dir(Path(tmpdir))["digest"]
        if not self.exists(digest):
            for name in IMAGE_FILES:  # manifest.json is last
                self.client.upload_file(str(Path(tmpdir) / name), self.bucket,
                                        self._key(digest, name), Config=self.transfer)
        return self.local.put(tmpdir)

    def upload(self, digest: str) -> None:
        """Publish an image that is already in the local store."""
        src = self.local.get(digest)
        if not self.exists(digest):
            for name in IMAGE_FILES:
                self.client.upload_file(str(src / name), self.bucket, self._key(digest, name),
                                        Config=self.transfer)

    def get(self, digest: str) -> Path:
        """The local path of an image, downloading (and verifying) it first if needed."""
        if self.local.exists(digest):
            return self.local.get(digest)
        if not self.exists(digest):
            raise ImageNotFound(f"no image {normalise_digest(digest)} in s3://{self.bucket}/"
                                f"{self.prefix}")
        staging = self.local.staging_dir()
        try:
            for name in IMAGE_FILES:
                self.client.download_file(self.bucket, self._key(digest, name),
                                          str(staging / name), Config=self.transfer)
            got = self.local.put(staging)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        if got != normalise_digest(digest):
            raise ImageStoreError(f"downloaded image has digest {got}, expected {digest}")
        return self.local.get(got)

    def list(self) -> list[str]:
        out = []
        for page in self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.prefix, Delimiter="/"):
            for cp in page.get("CommonPrefixes", []):
                name = cp["Prefix"][len(self.prefix):].rstrip("/")
                if _DIGEST.match(name):
                    out.append(name)
        return sorted(out)

    def gc(self, keep: set[str]) -> list[str]:
        """Delete every image not in `keep` from the bucket and from the local copies."""
        keep = {normalise_digest(d) for d in keep}
        removed = []
        for digest in self.list():
            if digest in keep:
                continue
            objs = self.client.list_objects_v2(Bucket=self.bucket,
                                               Prefix=f"{self.prefix}{digest}/")
            keys = [{"Key": o["Key"]} for o in objs.get("Contents", [])]
            if keys:
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": keys})
            removed.append(digest)
        self.local.gc(keep)
        return removed

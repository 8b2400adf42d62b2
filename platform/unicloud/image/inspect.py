"""Read-only views of a stored image, for `unicloud images:inspect` / `images:export`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from unicloud.image.audit import audit_entries
from unicloud.image.compression import CompressionError, read_rootfs_bytes
from unicloud.image.cpio import read_newc
from unicloud.image.sbom import sbom_summary
from unicloud.image.store import IMAGE_FILES, ROOTFS_FILE, ImageStoreError, verify_image_dir


def read_rootfs(path: Path) -> list:
    """The cpio entries of an image's rootfs (every layer, in unpack order)."""
    try:
        return read_newc(read_rootfs_bytes(path))
    except CompressionError as exc:
        raise ImageStoreError(str(exc)) from exc


def inspect_image(path: Path, *, reaudit: bool = False) -> dict:
    """Sizes, hashes, audit result and SBOM summary of the image directory at `path`.
    With `reaudit`, the rootfs is unpacked and audited again instead of trusting the manifest."""
    path = Path(path)
    manifest = verify_image_dir(path)
    sbom = json.loads((path / "sbom.cdx.json").read_text())
    audit = audit_entries(read_rootfs(path / ROOTFS_FILE)).as_dict() if reaudit \
        else manifest["audit"]
    return {
        "digest": manifest["digest"],
        "path": str(path),
        "flavour": manifest["flavour"],
        "runtime": manifest["runtime"],
        "process_types": manifest["process_types"],
        "sizes": {"kernel": manifest["kernel"]["size"], "rootfs": manifest["rootfs"]["size"],
                  "rootfs_uncompressed": manifest["rootfs"]["uncompressed_size"],
                  "total": manifest["total_size"]},
        "sha256": {"kernel": manifest["kernel"]["sha256"],
                   "rootfs": manifest["rootfs"]["sha256"], "sbom": manifest["sbom"]["sha256"]},
        "kernel_config_key": manifest["kernel"]["config_key"],
        "files": manifest["rootfs"]["files"],
        "compression": manifest["rootfs"].get("compression"),
        "layers": manifest["rootfs"].get("layers", []),
        "audit": audit,
        "sbom": sbom_summary(sbom),
    }


def export_image(path: Path, out_dir: Path) -> list[Path]:
    """Copy kernel, rootfs, manifest and SBOM of a verified image to `out_dir`."""
    path = Path(path)
    verify_image_dir(path)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in IMAGE_FILES:
        dest = out_dir / name
        shutil.copyfile(path / name, dest)
        written.append(dest)
    return written

"""Build root + runtime manifest -> audited, reproducible VM image in the content-addressed store.

closure (ELF deps, stdlib, app) -> rootfs entries -> audit (fails the build) -> three cpio layers
(system, runtime, app), each its own xz stream, the first two cached by content -> SBOM ->
manifest.json with a digest over everything -> ImageStore.put.
Same root + manifest + kernel + init -> bit-identical rootfs and the same digest.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from unicloud.config import Settings
from unicloud.image import layers as layers_mod
from unicloud.image import rootfs as rootfs_mod
from unicloud.image.audit import audit_entries
from unicloud.image.compression import DESCRIPTION as COMPRESSION
from unicloud.image.closure import ClosureBuilder, ClosureError
from unicloud.image.probe import ProbeError
from unicloud.image.rootfs import RootfsError
from unicloud.image.rootpath import host_path
from unicloud.image.sbom import build_sbom
from unicloud.image.stdlib import StdlibError, prune_stdlib
from unicloud.image.store import (ROOTFS_FILE, ImageStore, ImageStoreError, canonical_json,
                                  file_sha256, manifest_digest)

FORMAT_VERSION = 2  # 2: xz rootfs in layers (rootfs.cpio.xz); 1 was one zstd archive
RUNTIMES = ("python", "go", "static")


class ImageBuildError(RuntimeError):
    """The image cannot be built from this root and manifest."""


class ImageAuditError(ImageBuildError):
    """The rootfs breaks the image policy; `violations` names the offending paths."""

    def __init__(self, violations: list[dict]):
        self.violations = violations
        lines = [f"  {v['path']}: {v['rule']} ({v['detail']})" for v in violations[:50]]
        more = f"\n  ... and {len(violations) - 50} more" if len(violations) > 50 else ""
        super().__init__("image audit failed:\n" + "\n".join(lines) + more)


@dataclass(frozen=True)
class ImageRecord:
    digest: str
    path: Path
    manifest: dict

    @property
    def total_size(self) -> int:
        return self.manifest["total_size"]


def validate_manifest(root: Path, manifest: dict) -> None:
    """Clear errors for the manifest fields the builder relies on."""
    if not isinstance(manifest, dict):
        raise ImageBuildError("runtime manifest must be a JSON object")
    runtime = manifest.get("runtime")
    if runtime not in RUNTIMES:
        raise ImageBuildError(f"runtime manifest: 'runtime' must be one of {RUNTIMES}, "
                              f"got {runtime!r}")
    interp = manifest.get("interpreter")
    if not isinstance(interp, str) or not interp.startswith("/"):
        raise ImageBuildError("runtime manifest: 'interpreter' must be an absolute path inside "
                              f"the build root, got {interp!r}")
    if runtime == "python" and not isinstance(manifest.get("stdlib"), str):
        raise ImageBuildError("runtime manifest: a python runtime needs 'stdlib'")
    for key in ("site_packages", "include", "exclude", "elf"):
        val = manifest.get(key, [])
        if not isinstance(val, list) or not all(isinstance(v, str) and v.startswith("/")
                                                for v in val):
            raise ImageBuildError(f"runtime manifest: {key!r} must be a list of absolute paths")
    if not isinstance(manifest.get("env", {}), dict):
        raise ImageBuildError("runtime manifest: 'env' must be an object")
    pt = manifest.get("process_types")
    if not isinstance(pt, dict) or not pt or not all(
            isinstance(k, str) and isinstance(v, str) and v.strip() for k, v in pt.items()):
        raise ImageBuildError("runtime manifest: 'process_types' must map names to commands")
    if not root.is_dir():
        raise ImageBuildError(f"build root {root} is not a directory")


def _kernel(flavour: str, kernel: Path | None) -> tuple[Path, str]:
    from unicloud.image.kernel import build as kbuild

    path = kernel or kbuild.ensure_kernel(flavour)
    return Path(path), kbuild.cache_key(flavour)


def build_image(root: Path, manifest: dict, *, store: ImageStore, source_date_epoch: int = 0,
                flavour: str = "microvm", log=print, kernel: Path | None = None,
                init: Path | None = None, cache_dir: Path | None = None) -> ImageRecord:
    """Build and store the image; `kernel`/`init` override the cached builds (tests, tools).
    `cache_dir` (default: the machine's cache) keeps compressed system and runtime layers, parses
    and bytecode between builds; none of it changes a byte of the image.

    Raises ImageAuditError for policy violations, ImageBuildError for everything else."""
    cache_dir = Path(cache_dir) if cache_dir is not None else Settings.from_env().cache_dir
    try:
        return _build_image(Path(root), manifest, store=store,
                            source_date_epoch=source_date_epoch, flavour=flavour, log=log,
                            kernel=kernel, init=init, cache_dir=cache_dir)
    except ImageBuildError:
        raise
    except (ClosureError, StdlibError, ProbeError, RootfsError, ImageStoreError) as exc:
        raise ImageBuildError(str(exc)) from exc


def _build_image(root: Path, manifest: dict, *, store: ImageStore, source_date_epoch: int,
                 flavour: str, log, kernel: Path | None, init: Path | None,
                 cache_dir: Path) -> ImageRecord:
    started = time.monotonic()
    validate_manifest(root, manifest)
    if init is None:
        from unicloud.image.init.build import ensure_init

        init = ensure_init()
    kernel_path, kernel_key = _kernel(flavour, kernel)

    phases: dict[str, float] = {}
    mark = [time.monotonic()]

    def phase(name: str) -> None:
        now = time.monotonic()
        phases[name] = round(now - mark[0], 2)
        mark[0] = now

    base_excluded = rootfs_mod.make_excluder(manifest)
    plan = None
    if manifest["runtime"] == "python":
        plan = prune_stdlib(root, manifest, excluded=base_excluded, log=log, cache_dir=cache_dir)
        phase("stdlib")
        for note in plan.notes:
            log(f"stdlib: {note}")
    dropped = tuple(plan.dropped) if plan else ()

    def excluded(p: str) -> bool:
        return base_excluded(p) or any(p == d or p.startswith(d + "/") for d in dropped)

    env = {k: str(v) for k, v in manifest.get("env", {}).items()}
    lib_path = [d for d in env.get("LD_LIBRARY_PATH", "").split(":") if d.startswith("/")]
    cb = ClosureBuilder(root, library_path=lib_path)
    cb.add_elf(manifest["interpreter"], "interpreter")
    for elf in manifest.get("elf", []):
        cb.add_elf(elf, "manifest elf")
    for inc in manifest.get("include", []):
        if host_path(root, inc).exists() or host_path(root, inc).is_symlink():
            cb.add_tree(inc, "include", excluded)
        else:
            raise ImageBuildError(f"runtime manifest: include {inc} does not exist in the root")
    for sp in manifest.get("site_packages", []):
        cb.add_tree(sp, "site-packages", excluded)
    if plan is not None:
        cb.add_path(plan.landmark, "getpath landmark")
        for so in plan.dynload:
            cb.add_elf(so, "stdlib extension module")
    cb.add_always_dlopened()
    cb.add_ca_certificates()
    phase("closure")

    fs = rootfs_mod.assemble(root, manifest, cb.closure, Path(init), plan)
    entries = fs.finalise(source_date_epoch)
    audit = audit_entries(entries)
    if not audit.passed:
        raise ImageAuditError(audit.as_dict()["violations"])
    phase("assemble+audit")
    log(f"image: rootfs of {len(entries)} entries passed the audit")

    staging = store.staging_dir()
    try:
        rootfs_path = staging / ROOTFS_FILE
        app_runtime = [*rootfs_mod.APP_RUNTIME_FILES,
                       *((plan.zip_path, *plan.dynload) if plan is not None else ())]
        layers = layers_mod.pack(entries, manifest, rootfs_path, app_runtime=app_runtime,
                                 cache=layers_mod.LayerCache(cache_dir / "layers"), log=log)
        uncompressed = sum(layer.raw_size for layer in layers)
        phase("pack")
        shutil.copyfile(kernel_path, staging / "kernel")
        rootfs_sha = file_sha256(rootfs_path)
        sbom = build_sbom(root, manifest, entries, fs.origins,
                          image_name=f"{manifest['runtime']}-app",
                          source_date_epoch=source_date_epoch, rootfs_sha256=rootfs_sha)
        (staging / "sbom.cdx.json").write_bytes(json.dumps(sbom, indent=1, sort_keys=True)
                                                .encode())
        kernel_size = (staging / "kernel").stat().st_size
        rootfs_size = rootfs_path.stat().st_size
        image_manifest = {
            "format": FORMAT_VERSION,
            "flavour": flavour,
            "kernel": {"sha256": file_sha256(staging / "kernel"), "size": kernel_size,
                       "config_key": kernel_key},
            "rootfs": {"sha256": rootfs_sha, "size": rootfs_size,
                       "uncompressed_size": uncompressed,
                       "files": sum(1 for e in entries if not e.is_dir),
                       "entries": len(entries), "compression": COMPRESSION,
                       "layers": [layer.as_dict() for layer in layers]},
            "sbom": {"sha256": file_sha256(staging / "sbom.cdx.json")},
            "runtime": {k: manifest.get(k) for k in ("runtime", "version", "interpreter")},
            "process_types": manifest["process_types"],
            "env": env,
            "workdir": manifest.get("workdir") or "/app",
            "source_date_epoch": source_date_epoch,
            "audit": audit.as_dict(),
            "total_size": kernel_size + rootfs_size,
        }
        image_manifest["digest"] = manifest_digest(image_manifest)
        (staging / "manifest.json").write_bytes(canonical_json(image_manifest))
        digest = store.put(staging)
        phase("sbom+store")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log(f"image: {digest[:12]} kernel {kernel_size / 1e6:.2f} MB + rootfs "
        f"{rootfs_size / 1e6:.2f} MB ({uncompressed / 1e6:.1f} MB unpacked, "
        f"{image_manifest['rootfs']['files']} files) = {image_manifest['total_size'] / 1e6:.2f} MB"
        f" in {time.monotonic() - started:.1f}s ({', '.join(f'{k} {v}s' for k, v in phases.items())})")
    return ImageRecord(digest, store.get(digest), image_manifest)

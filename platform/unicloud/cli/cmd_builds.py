"""builds, builds:info, builds:cache:purge, images:inspect, images:export."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated, Optional

import typer

from unicloud.cli.base import AppOpt, JsonOpt, app, app_path, resolve_app
from unicloud.cli.client import Api, q
from unicloud.cli.credentials import CliError
from unicloud.cli.output import columns, echo, header, human_size, key_values, print_json, progress, when

IMAGE_FILES = ("kernel", "rootfs.cpio.xz", "manifest.json", "sbom.cdx.json")


@app.command("builds")
def builds(app_name: AppOpt = None, as_json: JsonOpt = False,
           num: Annotated[int, typer.Option("-n", "--num", help="how many")] = 15):
    """List an app's builds, newest first."""
    target = resolve_app(app_name)
    rows = Api().get(app_path(target, "builds"), limit=num)
    if as_json:
        return print_json(rows)
    if not rows:
        echo(f"{target} has no builds yet: build with `git push unicloud main`")
        return
    header(f"{target} Builds")
    columns([b["id"], b["status"], (b["commit"] or "")[:7], b["user"] or "", when(b["created_at"]),
             f"v{b['release']}" if b["release"] else ""] for b in rows)


@app.command("builds:info")
def build_info(build_id: Annotated[Optional[str], typer.Argument(help="build id (default: the latest)")] = None,
               app_name: AppOpt = None, as_json: JsonOpt = False):
    """Show a build and its log (the live log so far while it runs)."""
    target = resolve_app(app_name)
    b = Api().get(app_path(target, "builds", q(build_id or "latest")))
    if as_json:
        return print_json(b)
    header(f"Build {b['id']}")
    key_values([("Status", b["status"]), ("Reason", b["reason"]), ("Commit", b["commit"]), ("Buildpack", b["buildpack"]),
                ("Stack", b["stack"]), ("By", b["user"]), ("Image", b["image"]),
                ("Release", f"v{b['release']}" if b["release"] else None), ("Created", when(b["created_at"]))])
    echo()
    typer.echo(b.get("log") or "(no log yet)", nl=not (b.get("log") or "").endswith("\n"))


@app.command("builds:cache:purge")
def cache_purge(app_name: AppOpt = None):
    """Delete the app's build cache; the next build starts clean."""
    target = resolve_app(app_name)
    progress(f"Purging the build cache of {target}")
    result = Api().delete(app_path(target, "build-cache"))
    echo(f"done, {human_size(result['bytes'])} freed" if result["purged"] else "done, it was empty")


@app.command("images:inspect")
def inspect(version: Annotated[str, typer.Argument(help="vN (default: the current release)")] = "current",
            app_name: AppOpt = None, as_json: JsonOpt = False):
    """Show an image: sizes, digest, audit result and SBOM summary."""
    target = resolve_app(app_name)
    data = Api().get(app_path(target, "images", q(version)))
    if as_json:
        return print_json(data)
    header(f"{target} v{data.get('release')} image")
    sizes = data.get("sizes") if isinstance(data.get("sizes"), dict) else {}
    runtime = data.get("runtime")
    if isinstance(runtime, dict):
        runtime = " ".join(str(runtime[k]) for k in ("runtime", "version") if runtime.get(k))
    rootfs = human_size(sizes.get("rootfs", data.get("rootfs_size")))
    if sizes.get("rootfs_uncompressed"):
        rootfs += f" ({human_size(sizes['rootfs_uncompressed'])} unpacked"
        rootfs += f", {data['files']} files)" if isinstance(data.get("files"), int) else ")"
    key_values([
        ("Digest", data.get("digest")),
        ("Runtime", f"{runtime} (kernel flavour {data['flavour']})" if data.get("flavour") else runtime),
        ("Kernel", human_size(sizes.get("kernel", data.get("kernel_size")))),
        ("Rootfs", rootfs),
        ("Total", human_size(sizes.get("total", data.get("total_size")))),
        ("Compression", data.get("compression")),
    ])
    for layer in data.get("layers") or []:
        if isinstance(layer, dict):
            echo(f"Layer {layer.get('name')}: {human_size(layer.get('size'))} "
                 f"({human_size(layer.get('uncompressed_size'))} unpacked, "
                 f"{layer.get('entries')} entries) sha256 {layer.get('sha256')}")
    sha = data.get("sha256")
    if isinstance(sha, dict):
        for name, digest in sha.items():
            echo(f"sha256 {name}: {digest}")
    audit = data.get("audit")
    if isinstance(audit, dict):
        verdict = "passed" if audit.get("passed") else "FAILED"
        violations = audit.get("violations") or []
        echo(f"Audit: {verdict} ({audit.get('checked', '?')} files checked, {len(violations)} violations)")
        for v in violations[:20]:
            echo(f"  {v.get('path')}: {v.get('rule')} {v.get('detail', '')}".rstrip())
    sbom = data.get("sbom")
    if isinstance(sbom, dict):
        by_source = ", ".join(f"{k}={v}" for k, v in (sbom.get("by_source") or {}).items())
        echo(f"SBOM: {sbom.get('files', '?')} files, {sbom.get('packages', '?')} packages"
             + (f" (by source: {by_source})" if by_source else ""))


@app.command("images:export")
def export(version: Annotated[str, typer.Argument(help="vN (default: the current release)")] = "current",
           out: Annotated[Path, typer.Option("-o", "--output", help="directory to write the image files to")] = Path("."),
           app_name: AppOpt = None):
    """Download an image's kernel, rootfs, manifest and SBOM, checking each file's sha256."""
    target = resolve_app(app_name)
    api = Api()
    release = api.get(app_path(target, "releases", q(version)))["version"] if version != "current" else None
    ref = f"v{release}" if release else "current"
    out.mkdir(parents=True, exist_ok=True)
    for name in IMAGE_FILES:
        dest = out / name
        progress(f"Downloading {name}")
        size, announced = api.download(app_path(target, "images", ref, "files", name), dest)
        if announced:
            h = hashlib.sha256()
            with dest.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
            if h.hexdigest() != announced:
                dest.unlink()
                raise CliError(f"{name}: sha256 mismatch (got {h.hexdigest()}, expected {announced})")
        echo(f"done, {human_size(size)}")
    echo(f"Exported {target} {ref} to {out}")

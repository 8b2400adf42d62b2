"""CycloneDX 1.5 SBOM of an image: every file, its sha256 and where it came from.

Provenance is read from the build root itself: the Debian packages from the dpkg database
(`/var/lib/dpkg/info/*.list` + `status`), Python distributions from `*.dist-info/RECORD`.
Files the builder made (stdlib zip, bytecode, /etc entries) name the build step instead.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

from unicloud.image.cpio import CpioEntry
from unicloud.image.rootpath import RootPathError, host_path, resolve

TOOL_NAME = "unicloud-image-builder"
TOOL_VERSION = "1"
SOURCE_PROPERTY = "unicloud:source"
# Files a package's maintainer scripts generate, so no *.list names them.
GENERATED_BY_PACKAGE = {"/etc/ssl/certs/ca-certificates.crt": "ca-certificates"}


@dataclass(frozen=True)
class Package:
    kind: str  # "deb" | "pypi"
    name: str
    version: str
    arch: str = ""

    @property
    def purl(self) -> str:
        if self.kind == "deb":
            q = f"?arch={self.arch}" if self.arch else ""
            return f"pkg:deb/debian/{quote(self.name)}@{quote(self.version)}{q}"
        return f"pkg:pypi/{quote(self.name.lower().replace('_', '-'))}@{quote(self.version)}"


def _parse_status(text: str) -> dict[str, Package]:
    pkgs: dict[str, Package] = {}
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line and not line[0].isspace() and ":" in line:
                k, v = line.split(":", 1)
                fields[k] = v.strip()
        if "Package" in fields and "installed" in fields.get("Status", "").split():
            p = Package("deb", fields["Package"], fields.get("Version", ""),
                        fields.get("Architecture", ""))
            pkgs[p.name] = p
            if p.arch:
                pkgs[f"{p.name}:{p.arch}"] = p
    return pkgs


class ProvenanceIndex:
    """Maps real in-root paths to the package that installed them."""

    def __init__(self, root: Path, site_packages: list[str]):
        self.root = root
        self.owner: dict[str, Package] = {}
        self.shared: set[str] = set()  # listed by several packages: /lib, /usr/lib, ...
        self._dir_cache: dict[str, str] = {}
        self._index_dpkg()
        for sp in site_packages:
            self._index_dist_info(sp)

    def _real(self, path: str) -> str | None:
        d, base = posixpath.split(path)
        if d not in self._dir_cache:
            try:
                self._dir_cache[d] = resolve(self.root, d).path
            except RootPathError:
                return None
        cand = posixpath.join(self._dir_cache[d], base)
        if host_path(self.root, cand).is_symlink():
            return cand  # the link itself ships as a link; its target is listed separately
        return cand

    def _index_dpkg(self) -> None:
        status = host_path(self.root, "/var/lib/dpkg/status")
        info = host_path(self.root, "/var/lib/dpkg/info")
        if not status.is_file() or not info.is_dir():
            return
        pkgs = _parse_status(status.read_text(errors="replace"))
        for lst in sorted(info.glob("*.list")):
            pkg = pkgs.get(lst.stem)
            if pkg is None:
                continue
            for line in lst.read_text(errors="replace").splitlines():
                if line.startswith("/") and line != "/.":
                    real = self._real(line)
                    if not real:
                        continue
                    if real in self.owner and self.owner[real] != pkg:
                        self.shared.add(real)
                    self.owner.setdefault(real, pkg)
        for path, name in GENERATED_BY_PACKAGE.items():
            if name in pkgs:
                self.owner.setdefault(path, pkgs[name])

    def _index_dist_info(self, site_packages: str) -> None:
        try:
            sp = resolve(self.root, site_packages).path
        except RootPathError:
            return
        for record in sorted(host_path(self.root, sp).glob("*.dist-info/RECORD")):
            m = re.match(r"^(.+?)-([^-]+)\.dist-info$", record.parent.name)
            if not m:
                continue
            pkg = Package("pypi", m.group(1), m.group(2))
            for line in record.read_text(errors="replace").splitlines():
                rel = line.rsplit(",", 2)[0] if line.count(",") >= 2 else line
                if not rel:
                    continue
                path = posixpath.normpath(posixpath.join(sp, rel.strip('"')))
                real = self._real(path)
                if real:
                    self.owner[real] = pkg  # dist-info beats dpkg for the same file

    def source_of(self, path: str, origin: str, app_dirs: list[str]) -> tuple[str, Package | None]:
        """(source label, package) for an image path, given the builder's origin hint."""
        if origin == "bytecode":  # __pycache__/x.cpython-311.pyc -> x.py
            d, base = posixpath.split(path)
            src = posixpath.join(posixpath.dirname(d), base.split(".")[0] + ".py")
            pkg = self.owner.get(src)
            if pkg:
                return f"{pkg.kind}:{pkg.name}", pkg
            return "app" if _under(src, app_dirs) else "build:bytecode", None
        if origin in ("stdlib-zip", "unicloud-init"):
            return (f"build:{origin}" if origin == "stdlib-zip" else origin), None
        if origin in ("generated", "directory"):
            return "build:generated", None
        if path in self.shared:
            return "deb:(shared directory)", None
        pkg = self.owner.get(path)
        if pkg:
            return f"{pkg.kind}:{pkg.name}", pkg
        if _under(path, app_dirs):
            return "app", None
        return "unknown", None


def _under(path: str, dirs: list[str]) -> bool:
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in dirs)


def build_sbom(root: Path, manifest: dict, entries: list[CpioEntry], origins: dict[str, str],
               *, image_name: str, source_date_epoch: int, rootfs_sha256: str) -> dict:
    index = ProvenanceIndex(root, manifest.get("site_packages", []))
    app_dirs = [resolve(root, d).path for d in manifest.get("include", [])
                if d.startswith("/")]
    files = []
    packages: dict[str, Package] = {}
    for e in entries:
        if e.is_dir:
            continue
        path = "/" + e.path.strip("/")
        source, pkg = index.source_of(path, origins.get(path, "root"), app_dirs)
        if pkg:
            packages[pkg.purl] = pkg
        comp = {"type": "file", "bom-ref": f"file:{path}", "name": path,
                "properties": [{"name": SOURCE_PROPERTY, "value": source},
                               {"name": "unicloud:mode", "value": f"{e.mode:o}"}]}
        if e.is_file:
            comp["hashes"] = [{"alg": "SHA-256", "content": hashlib.sha256(e.data).hexdigest()}]
        elif e.is_symlink:
            comp["properties"].append({"name": "unicloud:symlink-target",
                                       "value": e.data.decode(errors="replace")})
        if pkg:
            comp["properties"].append({"name": "unicloud:package", "value": pkg.purl})
        files.append(comp)
    components = [{"type": "library", "bom-ref": p.purl, "name": p.name, "version": p.version,
                   "purl": p.purl} for _, p in sorted(packages.items())] + files
    deps = {}
    for f in files:
        for prop in f["properties"]:
            if prop["name"] == "unicloud:package":
                deps.setdefault(prop["value"], []).append(f["bom-ref"])
    return {
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, 'unicloud:' + rootfs_sha256)}",
        "version": 1,
        "metadata": {
            "timestamp": datetime.fromtimestamp(source_date_epoch, timezone.utc)
            .strftime("%Y-%m-%dT%H:%M:%SZ"),
            "tools": {"components": [{"type": "application", "name": TOOL_NAME,
                                      "version": TOOL_VERSION}]},
            "component": {"type": "container", "bom-ref": "image", "name": image_name,
                          "hashes": [{"alg": "SHA-256", "content": rootfs_sha256}]},
        },
        "components": components,
        # "the package provides these files", expressed as CycloneDX 1.5 dependencies
        "dependencies": [{"ref": ref, "dependsOn": sorted(files_)}
                         for ref, files_ in sorted(deps.items())],
    }


def sbom_summary(sbom: dict) -> dict:
    """Counts by source for `images:inspect`."""
    by_source: dict[str, int] = {}
    files = 0
    for c in sbom.get("components", []):
        if c.get("type") != "file":
            continue
        files += 1
        for p in c.get("properties", []):
            if p["name"] == SOURCE_PROPERTY:
                kind = p["value"].split(":", 1)[0]
                by_source[kind] = by_source.get(kind, 0) + 1
    pkgs = [c["purl"] for c in sbom.get("components", []) if c.get("type") == "library"]
    return {"files": files, "packages": len(pkgs), "by_source": dict(sorted(by_source.items())),
            "package_list": pkgs}

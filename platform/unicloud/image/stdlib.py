"""Prune a Python stdlib to what an app imports, as bytecode in a zip.

The whole stdlib is 44 MB of cpio and does not unpack in 128 MB of guest RAM, so only modules in
the union of (a) a static import closure (modulefinder) over the app and its site-packages,
(b) a traced import of the app's entry modules, and (c) a base set the interpreter needs to
start are kept. modulefinder follows imports inside functions and `try:` blocks too, so optional
imports are kept: an unused module costs a few KB, an ImportError costs a production outage.
"""

from __future__ import annotations

import io
import os
import posixpath
import re
import shlex
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from unicloud.image.probe import ProbeError, run_probe
from unicloud.image.rootpath import host_path, resolve, to_root_relative
from unicloud.image.stdlib_cache import StdlibCache

# Never shipped: tests, GUIs, installers, build tooling, and interactive debugging tools that
# stdlib modules only import under `if __name__ == "__main__"` (doctest, pdb) or for a REPL
# (readline, which would drag libreadline and libtinfo in). There is no terminal in the image.
EXCLUDED_PACKAGES = (
    "test", "idlelib", "tkinter", "_tkinter", "turtle", "turtledemo", "ensurepip", "lib2to3",
    "pydoc_data", "distutils", "venv", "pip", "_distutils_system_mod",
    "doctest", "pdb", "bdb", "pydoc", "unittest", "rlcompleter", "readline", "webbrowser",
    "_pydecimal", "curses", "_curses", "_curses_panel", "tabnanny", "pstats", "profile",
    "cProfile", "trace", "_ctypes_test", "_testcapi", "_testbuffer", "_testinternalcapi",
    "_testmultiphase", "_testimportmultiple", "_testclinic", "_xxtestfuzz", "xxlimited",
    "xxlimited_35", "_xxsubinterpreters", "ossaudiodev", "nis", "_crypt", "crypt",
)
# What interpreter start-up, tracebacks and `python -m` need, whatever the app imports.
BASE_MODULES = (
    "encodings", "codecs", "io", "abc", "site", "_sitebuiltins", "sitecustomize", "os", "stat",
    "posixpath", "genericpath", "_collections_abc", "importlib", "importlib.abc",
    "importlib.machinery", "importlib.util", "importlib._abc", "importlib.readers", "runpy",
    "pkgutil", "zipimport", "traceback", "linecache", "tokenize", "token", "warnings",
    "weakref", "_weakrefset", "types", "functools", "collections", "keyword", "operator",
    "reprlib", "heapq", "copyreg", "contextlib", "re", "enum", "locale", "signal", "threading",
    "_threading_local", "struct", "socket", "selectors", "errno", "json", "logging", "string",
)
# pip's venv companions: build tooling, dropped from the image unless the app (or a package it
# reaches) imports them statically; they hold ~10 MB of vendored code and pull half the stdlib.
BUILD_TOOL_PACKAGES = ("setuptools", "pkg_resources", "_distutils_hack", "wheel")
BUILD_TOOL_FILES = ("distutils-precedence.pth",)
# Codecs that need a CJK codec extension (~0.9 MB of .so) or libbz2; an app that decodes these
# charsets must import the codec for it to ship.
CJK_ENCODINGS = re.compile(r"^(big5|big5hkscs|cp932|cp949|cp950|euc_.*|gb2312|gbk|gb18030|hz|"
                           r"iso2022_.*|johab|shift_jis.*|bz2_codec)$")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_APP_SPEC = re.compile(r"^([A-Za-z_][\w.]*):[A-Za-z_][\w.()]*$")
ZIP_DATE = (1980, 1, 1, 0, 0, 0)
# The stdlib in the zip is compiled as `-OO` would (no docstrings, no asserts): the zip is 15%
# smaller (hello: 4.86 -> 4.14 MB, 166 KB less after zstd). zipimport loads any `name.pyc`
# whatever its optimization level, and the stdlib is supported under -OO (it never needs its own
# docstrings at run time). Only the stdlib: the app and site-packages keep optimize=0, as
# libraries (click, typer, docopt, ...) read their docstrings.
ZIP_OPTIMIZE = 2


class StdlibError(RuntimeError):
    """The stdlib could not be pruned (missing landmark, probe failure, ...)."""


@dataclass
class StdlibPlan:
    """The pruned stdlib: a zip, the extension modules to copy, and precompiled app bytecode."""

    zip_path: str
    zip_bytes: bytes
    zip_modules: list[str]
    dynload: list[str]
    landmark: str
    pycache: dict[str, bytes] = field(default_factory=dict)  # in-root .pyc path -> bytes
    dropped: list[str] = field(default_factory=list)  # site-packages paths not to ship
    notes: list[str] = field(default_factory=list)


def _module_name(rel: str) -> str | None:
    """Dotted name of a .py file relative to a sys.path entry, or None if not importable."""
    parts = rel[:-3].split("/")
    if parts[-1] == "__init__":
        parts = parts[:-1]
    if not parts or not all(_IDENT.match(p) for p in parts):
        return None
    return ".".join(parts)


def _py_files(root: Path, top: str, skip) -> list[str]:
    out = []
    hp_top = host_path(root, top)
    for dirpath, dirnames, filenames in os.walk(hp_top):
        rel_dir = to_root_relative(root, Path(dirpath))
        dirnames[:] = sorted(d for d in dirnames
                             if d != "__pycache__" and not skip(posixpath.join(rel_dir, d)))
        for f in sorted(filenames):
            p = posixpath.join(rel_dir, f)
            if f.endswith(".py") and not skip(p) and (Path(dirpath) / f).is_file():
                out.append(p)
    return out


def entry_modules(root: Path, manifest: dict) -> list[str]:
    """Modules the process commands import first: `gunicorn app:app` -> app, gunicorn's entry."""
    mods: list[str] = []
    for cmd in manifest.get("process_types", {}).values():
        try:
            argv = shlex.split(cmd)
        except ValueError:
            continue
        for tok in argv:
            m = _APP_SPEC.match(tok)
            if m:
                mods.append(m.group(1))
        if argv and re.match(r"(.*/)?python[\d.]*$", argv[0]):
            if "-m" in argv[1:-1]:
                mods.append(argv[argv.index("-m") + 1])
            scripts = [a for a in argv[1:] if a.endswith(".py") and "/" not in a]
            if scripts:  # `python app.py`: importing it as `app` runs all but its __main__ block
                mods.append(scripts[0][:-3])
        elif argv:
            mods += _console_script_modules(root, manifest, argv[0])
    return sorted(set(m for m in mods if all(_IDENT.match(p) for p in m.split("."))))


def _console_script_modules(root: Path, manifest: dict, name: str) -> list[str]:
    """The module a console script (from entry_points.txt) starts in."""
    found = []
    for sp in manifest.get("site_packages", []):
        hp = host_path(root, sp)
        if not hp.is_dir():
            continue
        for ep in sorted(hp.glob("*.dist-info/entry_points.txt")):
            section = None
            for line in ep.read_text(errors="replace").splitlines():
                line = line.strip()
                if line.startswith("["):
                    section = line
                elif section == "[console_scripts]" and "=" in line:
                    key, value = (s.strip() for s in line.split("=", 1))
                    if key == name:
                        found.append(value.split(":", 1)[0].strip())
    return found


def app_python(root: Path, manifest: dict) -> str:
    """The interpreter the app's processes run: the first python on the manifest's PATH."""
    path = manifest.get("env", {}).get("PATH", "")
    for d in path.split(":"):
        for name in ("python3", "python"):
            cand = posixpath.join(d, name)
            if d.startswith("/") and host_path(root, resolve(root, cand).path).is_file():
                return cand
    return manifest["interpreter"]


# Stdlib modules that import another stdlib module by a computed name, invisible to the import
# scan and to a start-up trace: sysconfig loads `_sysconfigdata_<abi>_<platform>_<multiarch>`
# (Django reaches it through zoneinfo at request time).
LOADED_BY_NAME = {"sysconfig": "_sysconfigdata_*.py"}


def _loaded_by_name(root: Path, stdlib: str, found: dict[str, str]) -> dict[str, str]:
    extra: dict[str, str] = {}
    for importer, pattern in LOADED_BY_NAME.items():
        if importer in found:
            for f in host_path(root, stdlib).glob(pattern):
                extra[f.stem] = f"{stdlib}/{f.name}"
    return extra


def prune_stdlib(root: Path, manifest: dict, *, excluded=lambda p: False,
                 compress: bool = False, log=print, cache_dir: Path | None = None
                 ) -> StdlibPlan:
    """`cache_dir` keeps parses and bytecode between builds (see stdlib_cache)."""
    stdlib = manifest.get("stdlib")
    if not stdlib:
        raise StdlibError("runtime manifest has no 'stdlib' entry for the python runtime")
    stdlib = resolve(root, stdlib).path
    landmark = posixpath.join(stdlib, "os.py")
    if not host_path(root, landmark).is_file():
        raise StdlibError(f"{landmark} is missing: not a CPython stdlib directory")
    interpreter = manifest["interpreter"]
    dynload_dir = posixpath.join(stdlib, "lib-dynload")
    site_packages = [resolve(root, s).path for s in manifest.get("site_packages", [])]
    workdir = manifest.get("workdir", "/app")
    ver = posixpath.basename(stdlib).replace("python", "").replace(".", "")
    zip_path = posixpath.join(posixpath.dirname(stdlib), f"python{ver}.zip")

    def skip(p: str) -> bool:
        return excluded(p) or any(f"/{pkg}/" in p + "/" and p.startswith(sp)
                                  for sp in site_packages for pkg in ("pip",)) \
            or "/.git/" in p + "/"

    # (b) traced run: interpreter start-up with site (venv .pth files) plus the entry modules
    env = {k: str(v) for k, v in manifest.get("env", {}).items()}
    env.setdefault("PORT", "8080")
    env.setdefault("HOME", workdir)
    entries = entry_modules(root, manifest)
    python = app_python(root, manifest)
    try:
        traced = run_probe(root, python, {"mode": "trace", "workdir": workdir,
                                          "modules": entries}, site=True, env=env, timeout=60)
        notes = [f"trace: cannot import {n}: {e}" for n, e in traced["failed"]]
    except ProbeError as exc:
        # importing the app may block (a database at import time, ...): the static analysis
        # still covers it, so trace only the interpreter start-up
        notes = [f"trace of {', '.join(entries)} abandoned: {exc}"]
        traced = run_probe(root, python, {"mode": "trace", "workdir": workdir, "modules": []},
                           site=True, env=env, timeout=60)

    # (a) static closure over the app, the entry modules and the base set, then over every
    # module of each site-packages distribution that closure reaches: code loaded by string
    # (gunicorn workers, Django backends) is invisible to static analysis but lives in a
    # package that is reached. Traced modules the static graph cannot explain are added.
    traced_names = {n for n in traced["modules"]
                    if n.split(".")[0] not in EXCLUDED_PACKAGES + BUILD_TOOL_PACKAGES}
    names: set[str] = set(BASE_MODULES) | set(entries)
    names |= {f"encodings.{p.stem}" for p in host_path(root, stdlib + "/encodings").glob("*.py")
              if not CJK_ENCODINGS.match(p.stem)}
    app_files = []
    for inc in manifest.get("include", []):
        if not host_path(root, inc).is_dir():
            continue
        for f in _py_files(root, inc, lambda p: skip(p) or any(
                p == sp or p.startswith(sp + "/") for sp in site_packages) or "/.venv/" in p):
            app_files.append(f)
            n = _module_name(posixpath.relpath(f, workdir)) if f.startswith(workdir + "/") \
                else None
            if n:
                names.add(n)
    by_top: dict[str, set[str]] = {}
    for sp in site_packages:
        for f in _py_files(root, sp, skip):
            n = _module_name(posixpath.relpath(f, sp))
            if n:
                by_top.setdefault(n.split(".")[0], set()).add(n)
    path = [workdir, *site_packages, stdlib, dynload_dir]
    all_site = set().union(*by_top.values()) if by_top else set()
    cache = StdlibCache(cache_dir, root, interpreter)
    known = cache.known_parses()
    scanned = run_probe(root, interpreter, {
        "mode": "scan", "path": path, "roots": sorted(names | all_site | traced_names),
        "excludes": list(EXCLUDED_PACKAGES), "known": known})
    cache.remember_parses(known, scanned.get("parsed", {}))
    graph = scanned["graph"]
    # A traced module reachable over any static edge is already decided by the static rules
    # (it may have come in through an optional import that merely succeeded in the build root);
    # the others were imported dynamically and become roots.
    explained = _reachable(graph, names | all_site)
    dynamic = {n for n in traced_names if n not in explained}
    names |= {n for n in dynamic if n in graph}
    traced_files = {n: f for n, f in traced["modules"].items()
                    if f and n in dynamic and n not in graph}

    def in_site(n: str) -> bool:
        f = graph.get(n, {}).get("file") or traced_files.get(n) or ""
        return any(f.startswith(sp + "/") for sp in site_packages)

    def is_stdlib(n: str) -> bool:
        f = graph[n]["file"]
        return f is None or (f.startswith(stdlib + "/") and not in_site(n))

    app_text = b"".join(host_path(root, f).read_bytes() for f in app_files)
    found_names, reached = closure_of(graph, names, in_site, by_top, app_text, is_stdlib,
                                      frozenset(traced["modules"]))
    dead = sorted(n for n in graph if graph[n].get("unimportable") and n not in found_names
                  and n not in traced["modules"])
    if dead:
        shown = ", ".join(f"{n} (needs {graph[n]['unimportable'][0]})" for n in dead[:8])
        log(f"stdlib: not following {len(dead)} modules that cannot be imported here: {shown}"
            + (", ..." if len(dead) > 8 else ""))
    found = {n: graph[n]["file"] for n in found_names if graph[n]["file"]} | traced_files
    found |= _loaded_by_name(root, stdlib, found)
    reached |= {n.split(".")[0] for n in traced_files if in_site(n)}
    dropped = _build_tools_to_drop(root, site_packages, reached)
    if dropped:
        log(f"stdlib: not shipping unused build tooling: "
            f"{', '.join(sorted({posixpath.basename(d) for d in dropped}))}")
    log(f"stdlib: site-packages distributions reached: {', '.join(sorted(reached)) or '-'}")

    zip_sources: dict[str, str] = {}
    dynload: set[str] = set()
    for name, f in sorted(found.items()):
        if name.split(".")[0] in EXCLUDED_PACKAGES:
            continue
        real = resolve(root, f).path if f.startswith("/") else f
        in_stdlib = f.startswith(stdlib + "/") and "/site-packages/" not in f \
            and "/dist-packages/" not in f
        if in_stdlib and f.startswith(dynload_dir + "/") and f.endswith(".so"):
            dynload.add(f)
        elif in_stdlib and f.endswith(".py"):
            arc = posixpath.relpath(f, stdlib)[:-3] + ".pyc"
            zip_sources[arc] = real
    log(f"stdlib: {len(zip_sources)} modules to the zip, {len(dynload)} extension modules "
        f"({len(traced['modules'])} traced, {len(dynamic)} of them dynamic imports, "
        f"{len(graph)} analysed)")

    compiled, failed, _ = cache.compile(
        [(src, posixpath.join(zip_path, arc[:-1])) for arc, src in sorted(zip_sources.items())],
        optimize=ZIP_OPTIMIZE)
    notes += [f"compile: {s}: {e}" for s, e in failed]
    zip_bytes = _write_zip({arc: compiled[src] for arc, src in zip_sources.items()
                            if src in compiled}, compress)

    # precompiled bytecode for the app and site-packages: the rootfs is read-only, so without
    # it every boot would compile every module again (seconds under TCG)
    def shipped(p: str) -> bool:
        return not skip(p) and not any(p == d or p.startswith(d + "/") for d in dropped)

    to_compile = app_files + [f for sp in site_packages for f in _py_files(root, sp, skip)
                              if shipped(f)]
    pycs, _, tag = cache.compile([(f, f) for f in sorted(set(to_compile))])
    pycache = {}
    for src, data in pycs.items():
        d, base = posixpath.split(src)
        pycache[posixpath.join(d, "__pycache__", f"{base[:-3]}.{tag}.pyc")] = data
    return StdlibPlan(zip_path, zip_bytes, sorted(zip_sources), sorted(dynload), landmark,
                      pycache, sorted(dropped), notes)


# Optional capabilities that drag large native libraries in (libssl+libcrypto 5.4 MB, liblzma,
# libbz2, libsqlite3, ...). The stdlib imports them under `try: ... except ImportError`, so they
# ship only when something needs them: a hard import anywhere, any import from the app or its
# packages, the traced run, or (for OpenSSL) an https:// URL in the app's own code.
HEAVY_GROUPS = {
    "openssl": ("ssl", "_ssl", "_hashlib"),
    "lzma": ("lzma", "_lzma"),
    "bz2": ("bz2", "_bz2"),
    "sqlite3": ("sqlite3", "_sqlite3"),
    "dbm": ("dbm", "_dbm", "_gdbm"),
}
_HEAVY = {m: g for g, mods in HEAVY_GROUPS.items() for m in mods}


def closure_of(graph: dict, roots: set[str], in_site, by_top: dict[str, set[str]],
               app_text: bytes, is_stdlib, importable: frozenset[str] = frozenset()
               ) -> tuple[set[str], set[str]]:
    """Modules needed from the scanned import graph; and the site-packages distributions
    reached. Hard edges are always followed, soft ones unless they lead into a heavy group
    that nothing else enables, and a stdlib module's command-line entry point (its `__main__`
    block, main() or _test()) is never followed. Every module of a reached distribution is a root: code loaded
    by string (gunicorn workers, Django middleware) lives in a package that is reached. A
    module that can never be imported here (the scan's "unimportable") is neither shipped nor
    followed, unless it was imported for real (`importable`, the traced run)."""
    needed: set[str] = set()
    deferred: dict[str, set[str]] = {}
    enabled: set[str] = set()
    if b"https://" in app_text:
        enabled.add("openssl")
    reached: set[str] = set()
    queue = [r for r in sorted(roots) if r in graph]

    def group_of(name: str) -> str | None:
        return _HEAVY.get(name) or _HEAVY.get(name.split(".")[0])

    def enable(group: str) -> None:
        if group not in enabled:
            enabled.add(group)
            queue.extend(sorted(deferred.pop(group, set())))

    while queue:
        name = queue.pop()
        if name in needed or name not in graph:
            continue
        if graph[name].get("unimportable") and name not in importable:
            continue
        needed.add(name)
        g = group_of(name)
        if g:
            enable(g)
        if in_site(name):
            top = name.split(".")[0]
            if top not in reached:
                reached.add(top)
                queue.extend(sorted(by_top.get(top, set())))
        from_outside_stdlib = not is_stdlib(name)
        for target, soft in graph[name]["edges"]:
            if soft == 2 and not from_outside_stdlib:
                continue  # a stdlib module's `python -m` entry point: dead code in a server
            if soft and target.split(".")[0] in BUILD_TOOL_PACKAGES:
                continue  # `try: import pkg_resources` ships setuptools only if imported for real
            tg = group_of(target)
            if tg and soft and tg not in enabled and not from_outside_stdlib:
                deferred.setdefault(tg, set()).add(target)
            else:
                queue.append(target)
    return needed, reached


def _reachable(graph: dict, roots: set[str]) -> set[str]:
    seen: set[str] = set()
    queue = [r for r in roots if r in graph]
    while queue:
        n = queue.pop()
        if n not in seen:
            seen.add(n)
            queue.extend(t for t, _ in graph[n]["edges"] if t in graph and t not in seen)
    return seen


def _build_tools_to_drop(root: Path, site_packages: list[str], reached: set[str]) -> list[str]:
    """Paths of setuptools & co. (packages, their dist-info, their .pth) nobody imports."""
    unused = [t for t in BUILD_TOOL_PACKAGES if t not in reached]
    if "setuptools" in reached or "pkg_resources" in reached:
        unused = [t for t in unused if t != "_distutils_hack"]
    out = []
    for sp in site_packages:
        hp = host_path(root, sp)
        for t in unused:
            if (hp / t).exists():
                out.append(posixpath.join(sp, t))
            for di in hp.glob(f"{t}-*.dist-info"):
                out.append(posixpath.join(sp, di.name))
        if "_distutils_hack" in unused:
            out += [posixpath.join(sp, f) for f in BUILD_TOOL_FILES if (hp / f).exists()]
    return out


def _write_zip(members: dict[str, bytes], compress: bool) -> bytes:
    """A byte-for-byte reproducible zip: sorted members, fixed dates and permissions."""
    buf = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(buf, "w", method) as zf:
        for arc in sorted(members):
            info = zipfile.ZipInfo(arc, date_time=ZIP_DATE)
            info.compress_type = method
            info.create_system = 3
            info.external_attr = 0o644 << 16
            zf.writestr(info, members[arc])
    return buf.getvalue()

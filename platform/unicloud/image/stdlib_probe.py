"""Runs under the *app's* interpreter inside the build root (as nobody, without network).

It is sent as `python -c` source, so it imports only the stdlib. One JSON request on stdin, one
JSON line prefixed with MARKER on stdout. Modes:
  analyse  static import closure (modulefinder) of the given modules, plus interpreter startup
  trace    import the app's entry modules with the app's own sys.path and report sys.modules
  compile  compile sources to unchecked-hash .pyc (reproducible: no mtimes), base64-encoded
"""
import base64
import json
import os
import sys

MARKER = "UNICLOUD-PROBE:"


def module_file(mod):
    f = getattr(mod, "__file__", None)
    return os.path.realpath(f) if f else None


def analyse(req):
    import modulefinder

    sys.path[:] = req["path"]
    finder = modulefinder.ModuleFinder(path=list(req["path"]), excludes=list(req["excludes"]))
    failed = []
    for name in req["modules"]:
        try:
            finder.import_hook(name)
        except Exception as exc:  # syntax errors in vendored py2 code, missing optional deps
            failed.append([name, repr(exc)[:200]])
    mods = {n: (m.__file__ or None) for n, m in finder.modules.items()}
    return {"modules": mods, "failed": failed}


def trace(req):
    os.chdir(req["workdir"])
    sys.path.insert(0, req["workdir"])
    failed = []
    for name in req["modules"]:
        try:
            __import__(name)
        except BaseException as exc:
            failed.append([name, repr(exc)[:200]])
    mods = {}
    for n, m in list(sys.modules.items()):
        mods[n] = module_file(m) if m is not None else None
    return {"modules": mods, "failed": failed}


def compile_(req):
    import importlib._bootstrap_external as ext
    import importlib.util

    out = {}
    failed = []
    for src, display in req["files"]:
        with open(src, "rb") as f:
            source = f.read()
        try:
            code = compile(source, display, "exec", dont_inherit=True, optimize=0)
        except (SyntaxError, ValueError) as exc:  # py2 leftovers in vendored files
            failed.append([src, repr(exc)[:200]])
            continue
        data = ext._code_to_hash_pyc(code, importlib.util.source_hash(source), checked=False)
        out[src] = base64.b64encode(bytes(data)).decode()
    return {"pyc": out, "failed": failed, "magic": base64.b64encode(importlib.util.MAGIC_NUMBER).decode(),
            "cache_tag": sys.implementation.cache_tag}


def main():
    req = json.loads(sys.stdin.read())
    result = {"analyse": analyse, "trace": trace, "compile": compile_}[req["mode"]](req)
    sys.stdout.flush()
    sys.stdout.write("\n" + MARKER + json.dumps(result) + "\n")
    sys.stdout.flush()


main()

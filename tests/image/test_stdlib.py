"""Import analysis: which imports are mandatory, optional or command-line only, and which
optional capabilities (OpenSSL, lzma, ...) ship."""

from __future__ import annotations

import ast
import base64
import textwrap

import pytest

from unicloud.image.stdlib import closure_of
from unicloud.image.stdlib_probe import compile_, import_edges

SOURCE = textwrap.dedent('''
    import os, json.decoder
    from . import sibling
    from .sub import thing
    try:
        import ssl
    except ImportError:
        ssl = None
    try:
        from _sha512 import sha512
    except ImportError:
        from hashlib import sha512
    try:
        import needed_c
    except ImportError:
        raise RuntimeError("needed_c is required")
    if TYPE_CHECKING:
        import typing_only
    def feature():
        import lazy
        try:
            import bz2
        except ImportError:
            raise ValueError("no bz2")
    def main():
        import argparse
    if __name__ == "__main__":
        import runner
    importlib.import_module("by_string")
''')


def test_import_edges_classify_imports():
    edges = {(m, soft) for m, soft, _, _ in import_edges(ast.parse(SOURCE), "pkg")}
    assert {("os", False), ("json.decoder", False), ("pkg", False), ("pkg.sibling", False),
            ("pkg.sub", False), ("pkg.sub.thing", False), ("lazy", False),
            ("needed_c", False)} <= edges
    assert {("ssl", True), ("_sha512", True), ("hashlib", True), ("bz2", True),
            ("by_string", True)} <= edges
    assert {("argparse", "cli"), ("runner", "cli")} <= edges
    assert not any(m == "typing_only" for m, _ in edges)


def graph(**mods):
    """name -> (file, [(target, strength)]) with strength 0 hard, 1 optional, 2 cli."""
    return {n: {"file": f, "kind": "py", "edges": e} for n, (f, e) in mods.items()}


STD = "/usr/lib/python3.11"
SITE = "/app/.venv/lib/python3.11/site-packages"


def run(g, roots, app_text=b""):
    def in_site(n):
        return (g.get(n, {}).get("file") or "").startswith(SITE)

    def is_stdlib(n):
        return (g[n]["file"] or STD).startswith(STD)

    by_top = {}
    for n, v in g.items():
        if in_site(n):
            by_top.setdefault(n.split(".")[0], set()).add(n)
    return closure_of(g, set(roots), in_site, by_top, app_text, is_stdlib)


def base_graph(extra: dict | None = None):
    return {**graph(
        app=("/app/app.py", [("http.client", 0)]),
        **{"http.client": (f"{STD}/http/client.py", [("ssl", 1), ("email", 0)]),
           "email": (f"{STD}/email/__init__.py", []),
           "ssl": (f"{STD}/ssl.py", [("_ssl", 0)]),
           "_ssl": (f"{STD}/lib-dynload/_ssl.so", []),
           "ast": (f"{STD}/ast.py", [("argparse", 2)]),
           "argparse": (f"{STD}/argparse.py", [])}), **(extra or {})}


def test_optional_openssl_stays_out_unless_something_needs_it():
    needed, _ = run(base_graph(), ["app", "ast"])
    assert needed == {"app", "http.client", "email", "ast"}
    # an https:// URL in the app's code enables it
    needed, _ = run(base_graph(), ["app"], app_text=b'URL = "https://api.example.com"')
    assert {"ssl", "_ssl"} <= needed
    # so does any import of it, even optional, from the app's packages
    g = base_graph(graph(requests=(f"{SITE}/requests/__init__.py", [("ssl", 1)]),
                         **{"requests.adapters": (f"{SITE}/requests/adapters.py", [])}))
    g["app"]["edges"].append(("requests", 0))
    needed, reached = run(g, ["app"])
    assert {"ssl", "_ssl", "requests", "requests.adapters"} <= needed
    assert reached == {"requests"}


def test_cli_imports_are_followed_only_from_app_code():
    g = base_graph()
    g["app"]["edges"].append(("ast", 2))  # app's own __main__ block: the real entry point
    needed, _ = run(g, ["app"])
    assert "ast" in needed and "argparse" not in needed


COMPILED = textwrap.dedent('''
    """Module docstring that -OO drops."""
    def f():
        """Function docstring that -OO drops."""
        assert False, "assert message that -O drops"
''')


def test_compile_probe_strips_docstrings_only_when_asked(tmp_path):
    src = tmp_path / "m.py"
    src.write_text(COMPILED)
    texts = (b"Module docstring", b"Function docstring", b"assert message")
    plain = compile_({"files": [[str(src), "m.py"]]})
    assert all(t in base64.b64decode(plain["pyc"][str(src)]) for t in texts)
    stripped = compile_({"files": [[str(src), "m.py"]], "optimize": 2})
    assert not any(t in base64.b64decode(stripped["pyc"][str(src)]) for t in texts)
    with pytest.raises(ValueError, match="optimize must be 0, 1 or 2"):
        compile_({"files": [[str(src), "m.py"]], "optimize": 3})


PLATFORM_SOURCE = textwrap.dedent('''
    import sys, os
    if sys.platform == "win32":
        import _winapi
    else:
        import _posixsubprocess
    if os.name != "nt":
        import fcntl
    if sys.platform.startswith(("win", "cygwin")):
        import msvcrt
    if not sys.platform == "darwin":
        import select
    if FLAG:
        import maybe
    def later():
        import lazy
''')


def test_platform_branches_are_decided_for_linux():
    edges = {m: required for m, _, _, required in import_edges(ast.parse(PLATFORM_SOURCE), "")}
    assert not {"_winapi", "msvcrt"} & set(edges)
    assert {"_posixsubprocess", "fcntl", "select", "maybe", "lazy"} <= set(edges)
    # what runs on every import of the module, and what only sometimes
    assert edges["sys"] and edges["_posixsubprocess"] and edges["fcntl"]
    assert not edges["maybe"] and not edges["lazy"]


def test_a_module_that_cannot_be_imported_is_neither_shipped_nor_followed():
    g = base_graph(graph(**{"gunicorn.workers.geventlet": (f"{SITE}/gunicorn/workers/geventlet.py",
                                                           [("packaging", 0), ("eventlet", 0)]),
                            "gunicorn": (f"{SITE}/gunicorn/__init__.py", []),
                            "packaging": (f"{SITE}/packaging/__init__.py", [("ctypes", 0)]),
                            "ctypes": (f"{STD}/ctypes/__init__.py", [])}))
    g["gunicorn.workers.geventlet"]["unimportable"] = ["eventlet"]
    g["app"]["edges"].append(("gunicorn", 0))
    needed, reached = run(g, ["app"])
    assert "gunicorn.workers.geventlet" not in needed and "ctypes" not in needed
    assert reached == {"gunicorn"}
    # the traced run imported it after all (something provided eventlet): it ships
    def is_stdlib(n):
        return (g[n]["file"] or STD).startswith(STD)
    by_top = {"gunicorn": {"gunicorn", "gunicorn.workers.geventlet"}, "packaging": {"packaging"}}
    needed, _ = closure_of(g, {"app"}, lambda n: (g.get(n, {}).get("file") or "").startswith(SITE),
                           by_top, b"", is_stdlib, frozenset({"gunicorn.workers.geventlet"}))
    assert {"gunicorn.workers.geventlet", "packaging", "ctypes"} <= needed

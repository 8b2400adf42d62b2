"""Runs under the *app's* interpreter inside the build root (as nobody, without network).

It is sent as `python -c` source, so it imports only the stdlib. One JSON request on stdin, one
JSON line prefixed with MARKER on stdout. Modes:
  scan     static import graph (AST, nothing executed), edges marked hard or soft; "known"
           carries earlier parses by content hash, "parsed" returns the new ones
  trace    import the app's entry modules with the app's own sys.path and report sys.modules
  compile  compile sources to unchecked-hash .pyc (reproducible: no mtimes), base64-encoded;
           "optimize" (0, 1 or 2, default 0) as for compile()
"""
import ast
import base64
import hashlib
import json
import os
import sys

MARKER = "UNICLOUD-PROBE:"


def module_file(mod):
    f = getattr(mod, "__file__", None)
    return os.path.realpath(f) if f else None


# `python -m module` entry points of stdlib modules (ast.main, json.tool.main, tarfile.main...)
CLI_FUNCTIONS = {"main", "_main", "_test", "test", "_demo"}
_CATCHES_IMPORT_ERROR = {"ImportError", "ModuleNotFoundError", "Exception", "BaseException"}


def _catches_import_error(handler):
    t = handler.type
    if t is None:
        return True
    names = t.elts if isinstance(t, ast.Tuple) else [t]
    return any(isinstance(n, ast.Name) and n.id in _CATCHES_IMPORT_ERROR or
               isinstance(n, ast.Attribute) and n.attr in _CATCHES_IMPORT_ERROR for n in names)


def _is_type_checking(test):
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _is_main_check(test):
    return isinstance(test, ast.Compare) and isinstance(test.left, ast.Name) and \
        test.left.id == "__name__" and any(isinstance(c, ast.Constant) and c.value == "__main__"
                                           for c in test.comparators)


# What the image's platform tests evaluate to: it is always Linux (this probe runs on it).
_PLATFORM_VALUES = {("sys", "platform"): sys.platform, ("_sys", "platform"): sys.platform,
                    ("os", "name"): os.name, ("_os", "name"): os.name}


def _platform_value(node):
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        return _PLATFORM_VALUES.get((node.value.id, node.attr))
    return None


def _constant_strings(node):
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)) and all(
            isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts):
        return [e.value for e in node.elts]
    return None


def platform_test(test):
    """True/False for a test on the platform alone (`sys.platform == "win32"`,
    `os.name != "nt"`, `sys.platform.startswith(("win", "cygwin"))`, `not ...`), else None."""
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        inner = platform_test(test.operand)
        return None if inner is None else not inner
    if isinstance(test, ast.Compare) and len(test.ops) == 1:
        value, consts = _platform_value(test.left), _constant_strings(test.comparators[0])
        if value is None or consts is None:
            return None
        op = test.ops[0]
        if isinstance(op, ast.Eq) and len(consts) == 1:
            return value == consts[0]
        if isinstance(op, ast.NotEq) and len(consts) == 1:
            return value != consts[0]
        if isinstance(op, ast.In):
            return value in consts
        if isinstance(op, ast.NotIn):
            return value not in consts
        return None
    if isinstance(test, ast.Call) and isinstance(test.func, ast.Attribute) and \
            test.func.attr == "startswith" and len(test.args) == 1 and not test.keywords:
        value, consts = _platform_value(test.func.value), _constant_strings(test.args[0])
        if value is not None and consts is not None:
            return value.startswith(tuple(consts))
    return None


def import_edges(tree, package):
    """(module, soft, maybe_attr, required) for every import in a module. `soft` is True when
    an ImportError is handled around it (and not re-raised) or in such a handler, and "cli"
    under `if __name__ == "__main__"` or in a main()/_test() function. `required` marks the
    imports every import of the module runs: module level, outside any condition, loop or try.
    Branches on the platform (`if sys.platform == "win32":`) are decided: only Linux's is read."""
    out = []

    def resolve(level, module):
        if not level:
            return module
        base = package.split(".") if package else []
        if level > 1:
            base = base[:len(base) - (level - 1)]
        return ".".join(base + ([module] if module else []))

    def visit(node, soft):
        required = not soft and not conditional[0]
        if isinstance(node, ast.Import):
            for a in node.names:
                out.append((a.name, soft, False, required))
            return
        if isinstance(node, ast.ImportFrom):
            base = resolve(node.level, node.module)
            if base:
                out.append((base, soft, False, required))
                for a in node.names:
                    if a.name != "*":
                        out.append((base + "." + a.name, soft, True, required))
            return
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            f = node.func
            fname = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) \
                else None
            if fname in ("__import__", "import_module") and node.args[0].value.strip("."):
                out.append((node.args[0].value, True, False, False))
        if isinstance(node, ast.If):
            on_linux = platform_test(node.test)
            if on_linux is not None:
                for child in (node.body if on_linux else node.orelse):
                    visit(child, soft)
                return
            if _is_type_checking(node.test):
                for child in node.orelse:
                    visit(child, soft)
                return
            if _is_main_check(node.test):
                for child in node.body:
                    visit(child, "cli")
                for child in node.orelse:
                    visit(child, soft)
                return
        if isinstance(node, (ast.If, ast.For, ast.AsyncFor, ast.While, ast.Try, ast.IfExp)) or \
                type(node).__name__ == "TryStar":
            saved, conditional[0] = conditional[0], True
            try:
                visit_branches(node, soft)
            finally:
                conditional[0] = saved
            return
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            saved, in_function[0], conditional[0] = (in_function[0], conditional[0]), True, True
            cli = getattr(node, "name", None) in CLI_FUNCTIONS
            for child in ast.iter_child_nodes(node):
                visit(child, "cli" if cli else soft)
            in_function[0], conditional[0] = saved
            return
        for child in ast.iter_child_nodes(node):
            visit(child, soft)

    def visit_branches(node, soft):
        if isinstance(node, ast.Try) or type(node).__name__ == "TryStar":
            import_handlers = [h for h in node.handlers if _catches_import_error(h)]
            # a module-level handler that raises makes the import mandatory after all; inside a
            # function it only makes one feature unavailable (tarfile's bz2open)
            reraises = not in_function[0] and any(
                isinstance(stmt, ast.Raise) for h in import_handlers for stmt in h.body)
            optional = bool(import_handlers) and not reraises
            for child in node.body:
                visit(child, soft or optional)
            for h in node.handlers:  # imports in an ImportError handler are the alternatives
                for child in h.body:
                    visit(child, soft or (h in import_handlers))
            for part in (node.orelse, node.finalbody):
                for child in part:
                    visit(child, soft)
            return
        for child in ast.iter_child_nodes(node):
            visit(child, soft)

    in_function = [False]
    conditional = [False]
    visit(tree, False)
    return out


def _locate(part, search, machinery):
    """The path-based import system's answer, from the file system alone (PathFinder needs
    parent packages in sys.modules for namespace packages)."""
    namespace = []
    for d in search:
        base = os.path.join(d, part)
        init = os.path.join(base, "__init__.py")
        if os.path.isfile(init):
            return {"file": init, "kind": "py", "search": [base]}
        for suffix in machinery.EXTENSION_SUFFIXES:
            if os.path.isfile(base + suffix):
                return {"file": base + suffix, "kind": "ext", "search": []}
        if os.path.isfile(base + ".py"):
            return {"file": base + ".py", "kind": "py", "search": []}
        if os.path.isdir(base):
            namespace.append(base)
    if namespace:
        return {"file": None, "kind": "namespace", "search": namespace}
    return None


def scan(req):
    """Import graph reachable from `roots` over `path`, without executing anything."""
    import importlib.machinery as machinery

    path = list(req["path"])
    excludes = set(req["excludes"])
    known = req.get("known") or {}  # earlier parses: "sha1:package" -> import_edges output
    parsed = {}
    found = {}

    def file_edges(filename, package):
        try:
            with open(filename, "rb") as f:
                source = f.read()
        except OSError:
            return []
        key = hashlib.sha1(source).hexdigest() + ":" + package
        if key not in known:
            try:
                known[key] = parsed[key] = [list(e) for e in
                                            import_edges(ast.parse(source, filename), package)]
            except (SyntaxError, ValueError):
                known[key] = parsed[key] = []
        return known[key]

    def find(name):
        if name in found:
            return found[name]
        result = None
        if name.split(".")[0] in excludes:
            found[name] = None
            return None
        parent, _, _ = name.rpartition(".")
        if parent:
            p = find(parent)
            search = p and p.get("search")
        else:
            search = path
        if not parent and name in sys.builtin_module_names:
            result = {"file": None, "kind": "builtin", "search": []}
        elif search:
            result = _locate(name.rpartition(".")[2], search, machinery)
        if result is not None:
            pass
        elif not parent and machinery.FrozenImporter.find_spec(name) is not None:
            result = {"file": None, "kind": "frozen", "search": []}
        found[name] = result
        return result

    graph = {}
    queue = list(req["roots"])
    while queue:
        name = queue.pop()
        if name in graph:
            continue
        info = find(name)
        if info is None:
            continue
        edges = []
        parts = name.split(".")
        for i in range(1, len(parts)):
            edges.append((".".join(parts[:i]), False))
        unimportable = []
        if info["kind"] == "py":
            package = name if info["search"] else name.rpartition(".")[0]
            for target, soft, maybe_attr, required in file_edges(info["file"], package):
                if maybe_attr and find(target) is None:
                    continue  # `from x import name` where name is not a module
                edges.append((target, soft))
                # a module whose unconditional import names a package that does not exist
                # here (eventlet for gunicorn's eventlet worker, _winapi) can never be imported
                if required and find(target.split(".")[0]) is None:
                    unimportable.append(target)
        strength = {}
        for target, soft in edges:  # 0 hard, 1 optional, 2 command-line only; hard wins
            level = 2 if soft == "cli" else int(bool(soft))
            strength[target] = min(level, strength.get(target, 2))
        graph[name] = {"file": info["file"], "kind": info["kind"],
                       "edges": sorted(strength.items())}
        if unimportable:
            graph[name]["unimportable"] = sorted(set(unimportable))
        queue.extend(t for t, _ in edges if t not in graph)
    missing = sorted(n for n, v in found.items() if v is None)
    return {"graph": graph, "missing": missing, "parsed": parsed}


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
    optimize = req.get("optimize", 0)
    if optimize not in (0, 1, 2):
        raise ValueError(f"compile: optimize must be 0, 1 or 2, got {optimize!r}")
    for src, display in req["files"]:
        with open(src, "rb") as f:
            source = f.read()
        try:
            code = compile(source, display, "exec", dont_inherit=True, optimize=optimize)
        except (SyntaxError, ValueError) as exc:  # py2 leftovers in vendored files
            failed.append([src, repr(exc)[:200]])
            continue
        data = ext._code_to_hash_pyc(code, importlib.util.source_hash(source), checked=False)
        out[src] = base64.b64encode(bytes(data)).decode()
    return {"pyc": out, "failed": failed, "magic": base64.b64encode(importlib.util.MAGIC_NUMBER).decode(),
            "cache_tag": sys.implementation.cache_tag}


def main():
    req = json.loads(sys.stdin.read())
    result = {"scan": scan, "trace": trace, "compile": compile_}[req["mode"]](req)
    sys.stdout.flush()
    sys.stdout.write("\n" + MARKER + json.dumps(result) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":  # also true under `python -c`
    main()

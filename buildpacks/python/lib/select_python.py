"""Pick the Python version (and so the build stack) an app asks for.

Runs with whatever python3 is at hand (the default stack's, or the host's in unit tests), so it
uses only the standard library. Prints "VERSION STACK SOURCE" or exits 1 with one clear line.
Order of precedence, as on Heroku: .python-version, runtime.txt, pyproject requires-python.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

# Python minor version -> the Debian stack that ships it. First entry is the default.
SUPPORTED = {"3.11": "debian-bookworm", "3.13": "debian-trixie", "3.14": "debian-sid"}
DEFAULT = "3.11"


class VersionError(Exception):
    pass


def supported_list() -> str:
    return ", ".join(SUPPORTED)


def from_exact(text: str, source: str) -> str:
    """'3.13', '3.13.2', 'python-3.13.x', '3.13.*' -> '3.13' (must be supported)."""
    m = re.fullmatch(r"(?:python-?)?(\d+)\.(\d+)(?:\.(?:\d+|x|\*))?", text.strip(), re.IGNORECASE)
    if not m:
        raise VersionError(f"cannot read a Python version from {source} ({text.strip()!r}); "
                           f"write e.g. 3.13 (supported: {supported_list()})")
    minor = f"{m[1]}.{m[2]}"
    if minor not in SUPPORTED:
        raise VersionError(f"unsupported Python version {minor} requested in {source} "
                           f"(supported: {supported_list()})")
    return minor


def _vtuple(v: str) -> tuple[int, ...]:
    return tuple(int(p) for p in v.split("."))


def _clause_ok(clause: str, minor: str) -> bool:
    """Does Python `minor` (e.g. '3.13') satisfy one PEP 440 clause?

    The stack ships a recent patch release we do not know in advance, so for ordering a minor
    stands for its newest patch (3.13 -> 3.13.99); `==`/`!=` compare only the parts we choose.
    """
    m = re.fullmatch(r"(~=|===|==|!=|<=|>=|<|>)\s*(\d+(?:\.\d+)*)(\.\*)?", clause.strip())
    if not m:
        raise VersionError(f"cannot read requires-python clause {clause.strip()!r}")
    op, want = m[1], _vtuple(m[2])
    have = _vtuple(minor) + (99,)
    pad = want + (0,) * (3 - len(want))
    if op in ("==", "===", "!="):
        n = min(len(want), 2)  # patch pins cannot be honoured; the minor decides
        same = have[:n] == want[:n]
        return same if op != "!=" else not same
    if op == "~=":
        if len(want) < 2:
            raise VersionError(f"invalid requires-python clause {clause.strip()!r}")
        return have >= pad and have[: len(want) - 1] == want[:-1]
    return {">=": have >= pad, ">": have > pad, "<=": have <= pad, "<": have < pad}[op]


def from_requires_python(spec: str) -> str:
    clauses = [c for c in spec.split(",") if c.strip()]
    ok = [v for v in SUPPORTED if all(_clause_ok(c, v) for c in clauses)]
    if not ok:
        raise VersionError(f"requires-python {spec.strip()!r} matches no supported Python version "
                           f"(supported: {supported_list()})")
    return ok[0]  # the first supported match in preference order (default, then stable, then sid)


def select(app: Path) -> tuple[str, str, str]:
    pv = app / ".python-version"
    if pv.is_file():
        lines = [ln.strip() for ln in pv.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
        if not lines:
            raise VersionError(".python-version is empty; write e.g. 3.13")
        v = from_exact(lines[0], ".python-version")
        return v, SUPPORTED[v], ".python-version"
    rt = app / "runtime.txt"
    if rt.is_file():
        v = from_exact(rt.read_text(), "runtime.txt")
        return v, SUPPORTED[v], "runtime.txt"
    pp = app / "pyproject.toml"
    if pp.is_file():
        import tomllib

        try:
            data = tomllib.loads(pp.read_text())
        except tomllib.TOMLDecodeError as e:
            raise VersionError(f"pyproject.toml is not valid TOML: {e}") from None
        spec = data.get("project", {}).get("requires-python")
        if spec:
            v = from_requires_python(spec)
            return v, SUPPORTED[v], "requires-python"
    return DEFAULT, SUPPORTED[DEFAULT], "default"


def main() -> int:
    try:
        version, stack, source = select(Path(sys.argv[1]))
    except VersionError as e:
        print(e, file=sys.stderr)
        return 1
    print(version, stack, source)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Build stacks: cached once per machine, never left half-built."""


import pytest

from unicloud.build import stack as stacks
from unicloud.build.stack import StackError, StackRecipe, ensure_stack, stack_path

from .conftest import needs_root

pytestmark = [pytest.mark.slow, needs_root]


@pytest.mark.parametrize("name, python", [
    ("debian-bookworm", "3.11"), ("debian-trixie", "3.13"), ("debian-sid", "3.14"), ("debian-bookworm-go", "3.11"),
])
def test_stack_has_build_tools_and_is_cached(name, python):
    lines = []
    root = ensure_stack(name, log=lines.append)  # built once per machine, then cached
    assert root == stack_path(name) and (root / ".unicloud-stack").is_file()
    assert ensure_stack(name, log=lines.append) == root
    for tool in (f"usr/bin/python{python}", "usr/bin/gcc", "usr/bin/make", "usr/bin/git",
                 f"usr/include/python{python}/Python.h", "etc/ssl/certs/ca-certificates.crt"):
        assert (root / tool).exists(), tool
    assert (root / f"usr/lib/python{python}/venv/__init__.py").is_file()
    if name.endswith("-go"):
        from unicloud.build.sandbox import base_env, run_in_root
        out = []
        assert run_in_root(root, ["go", "version"], env=base_env(name), log=out.append, timeout=60) == 0
        assert out and out[-1].startswith("go version go1.27")


def test_failed_debootstrap_leaves_no_half_stack(tmp_path, monkeypatch):
    monkeypatch.setenv("UNICLOUD_CACHE_DIR", str(tmp_path))
    broken = StackRecipe("debian-broken", "bookworm", "3.11", packages=("no-such-package-unicloud",))
    monkeypatch.setitem(stacks.STACKS, broken.name, broken)
    lines = []
    with pytest.raises(StackError, match="debootstrap failed"):
        ensure_stack(broken.name, log=lines.append)
    assert any("no-such-package-unicloud" in ln for ln in lines)
    leftovers = [p.name for p in (tmp_path / "stacks").iterdir() if not p.name.endswith(".lock")]
    assert leftovers == []
    assert not stack_path(broken.name).exists()

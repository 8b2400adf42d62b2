"""Each way a build fails gives its own short reason; a killed build leaves nothing behind."""

import textwrap

import pytest

from unicloud.build.pipeline import NO_BUILDPACK, BuildError

from .conftest import APPS, assert_no_mounts, build, processes_rooted_under, needs_root

pytestmark = [pytest.mark.slow, needs_root]


def make_app(tmp_path, files: dict[str, str]):
    src = tmp_path / "src"
    for name, content in files.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_text(textwrap.dedent(content))
    return src


def failing_build(tmp_path, src, **kw) -> str:
    with pytest.raises(BuildError) as err:
        build(src, tmp_path, **kw)
    assert_no_mounts(tmp_path)
    return err.value.reason


def test_no_detectable_app(tmp_path):
    src = make_app(tmp_path, {"index.html": "<h1>hi</h1>"})
    assert failing_build(tmp_path, src) == NO_BUILDPACK


def test_no_web_process_and_no_default(tmp_path):
    src = make_app(tmp_path, {"requirements.txt": "", "worker.py": "print('hi')", "Procfile": "worker: python worker.py\n"})
    assert failing_build(tmp_path, src).startswith("no web process: add a Procfile with a 'web:' line")


def test_unsatisfiable_requirement(tmp_path):
    src = make_app(tmp_path, {"requirements.txt": "flask==0.0.0.1\n", "app.py": ""})
    reason = failing_build(tmp_path, src)
    assert reason.startswith("unsatisfiable requirement: flask==0.0.0.1 (no matching distribution")


def test_c_extension_compile_error(tmp_path):
    src = make_app(tmp_path, {
        "requirements.txt": "./broken\n",
        "app.py": "",
        "broken/setup.py": """
            from setuptools import Extension, setup
            setup(name="broken", version="1.0", ext_modules=[Extension("broken", ["broken.c"])])
        """,
        "broken/broken.c": "this is not C;\n",
    })
    assert failing_build(tmp_path, src).startswith("compile error while building broken")


def test_go_compile_error(tmp_path):
    src = make_app(tmp_path, {"go.mod": "module example.com/bad\n\ngo 1.22\n",
                              "main.go": "package main\n\nfunc main() { undefinedThing() }\n"})
    reason = failing_build(tmp_path, src)
    assert reason.startswith("go build failed: ") and "undefined: undefinedThing" in reason


GO_SUM = ("github.com/google/uuid v1.6.0 h1:NIvaJDMOsjHA8n1jAhLSgzrAzy1Hgr+hNrb57e+94F0=\n"
          "github.com/google/uuid v1.6.0/go.mod h1:TIyPZe4MgqvfeYDBFedMoGGpEw/LqOeaOT+nhxU+yHo=\n")


@pytest.mark.parametrize("with_go_sum", [True, False])
def test_go_module_downloads_fail_quickly_with_a_clear_message(tmp_path, with_go_sum):
    src = make_app(tmp_path, {
        "go.mod": "module example.com/deps\n\ngo 1.22\n\nrequire github.com/google/uuid v1.6.0\n",
        "main.go": 'package main\n\nimport "github.com/google/uuid"\n\nfunc main() { println(uuid.NewString()) }\n',
        **({"go.sum": GO_SUM} if with_go_sum else {}),
    })
    assert failing_build(tmp_path, src).startswith("Go module downloads are not available on this platform")


def test_unsupported_python_version(tmp_path):
    src = make_app(tmp_path, {"requirements.txt": "", "app.py": "", ".python-version": "3.12\n"})
    assert failing_build(tmp_path, src) == (
        "unsupported Python version 3.12 requested in .python-version (supported: 3.11, 3.13, 3.14)")


def test_invalid_procfile(tmp_path):
    src = make_app(tmp_path, {"requirements.txt": "", "Procfile": "gunicorn app:app\n"})
    assert "Procfile line 1 is not 'name: command'" in failing_build(tmp_path, src)


def test_timeout_kills_every_build_process_and_leaves_no_mounts(tmp_path):
    """A buildpack that hangs, with a child that escapes into its own session."""
    bps = tmp_path / "buildpacks"
    (bps / "python" / "bin").mkdir(parents=True)
    scripts = {
        "detect": "#!/bin/sh\necho Sleepy\n",
        "compile": "#!/bin/sh\necho '-----> sleeping'\nsetsid sleep 1000 &\nsleep 1000\n",
    }
    for name, text in scripts.items():
        (bps / "python" / "bin" / name).write_text(text)
        (bps / "python" / "bin" / name).chmod(0o755)
    src = make_app(tmp_path, {"requirements.txt": ""})
    reason = failing_build(tmp_path, src, timeout=8, buildpacks_dir=bps)
    assert reason == "build timed out after 8s"
    assert processes_rooted_under(tmp_path) == []
    assert not (tmp_path / "build" / "root").exists()


def test_stale_mounts_of_a_dead_worker_are_cleaned_up(tmp_path):
    """A worker that died mid-build left its overlay mounted; the next build in that dir cleans up."""
    from unicloud.build.sandbox import Sandbox, mounts_under
    from unicloud.build.stack import ensure_stack

    left = Sandbox(ensure_stack("debian-bookworm"), tmp_path / "build", "debian-bookworm").open()
    assert mounts_under(tmp_path) == [str(left.root)]
    out, _ = build(APPS / "python-hello", tmp_path)
    assert mounts_under(tmp_path) == [str(out.root)]
    out.close()
    assert_no_mounts(tmp_path)

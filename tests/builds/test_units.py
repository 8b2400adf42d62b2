"""Fast tests: no stack, no sandbox."""

import subprocess
import sys

import pytest

from unicloud.build import sandbox
from unicloud.build.pipeline import BUILDPACKS_DIR, BuildError, _failure_reason, _release_defaults, _write_env_dir
from unicloud.build.procfile import ProcfileError, parse_procfile
from unicloud.build.stack import STACKS, StackError, stack_path

SELECT = BUILDPACKS_DIR / "python" / "lib" / "select_python.py"


def test_procfile_parses_types_and_skips_comments():
    text = "# processes\nweb: gunicorn app:app --bind [::]:$PORT\n\nworker:python worker.py  \n"
    assert parse_procfile(text) == {"web": "gunicorn app:app --bind [::]:$PORT", "worker": "python worker.py"}


def test_procfile_keeps_colons_in_commands():
    assert parse_procfile("web: uvicorn main:app --host ::")["web"] == "uvicorn main:app --host ::"


@pytest.mark.parametrize("text, fragment", [
    ("gunicorn app:app without a name\n", "line 1 is not 'name: command'"),
    ("web:\n", "has no command"),
    ("web: a\nweb: b\n", "declared twice"),
    ("web app: x\n", "line 1"),
])
def test_procfile_errors_name_the_line(text, fragment):
    with pytest.raises(ProcfileError, match=fragment):
        parse_procfile(text)


def select(tmp_path, files: dict[str, str]):
    for name, content in files.items():
        (tmp_path / name).write_text(content)
    return subprocess.run([sys.executable, str(SELECT), str(tmp_path)], capture_output=True, text=True)


@pytest.mark.parametrize("files, expected", [
    ({}, "3.11 debian-bookworm default"),
    ({".python-version": "3.13\n"}, "3.13 debian-trixie .python-version"),
    ({".python-version": "# pinned\n3.14.0\n"}, "3.14 debian-sid .python-version"),
    ({"runtime.txt": "python-3.13.x\n"}, "3.13 debian-trixie runtime.txt"),
    ({"runtime.txt": "python-3.11.9"}, "3.11 debian-bookworm runtime.txt"),
    ({"pyproject.toml": '[project]\nrequires-python = ">=3.12"\n'}, "3.13 debian-trixie requires-python"),
    ({"pyproject.toml": '[project]\nrequires-python = ">=3.10,<4"\n'}, "3.11 debian-bookworm requires-python"),
    ({"pyproject.toml": '[project]\nrequires-python = "==3.14.*"\n'}, "3.14 debian-sid requires-python"),
    ({"pyproject.toml": '[project]\nrequires-python = "~=3.13.1"\n'}, "3.13 debian-trixie requires-python"),
    ({".python-version": "3.14", "runtime.txt": "python-3.11.2"}, "3.14 debian-sid .python-version"),
])
def test_python_version_selection(tmp_path, files, expected):
    res = select(tmp_path, files)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == expected


@pytest.mark.parametrize("files, fragment", [
    ({".python-version": "3.12\n"}, "unsupported Python version 3.12 requested in .python-version (supported: 3.11, 3.13, 3.14)"),
    ({"runtime.txt": "python-2.7.18"}, "unsupported Python version 2.7"),
    ({".python-version": "pypy3.10"}, "cannot read a Python version from .python-version"),
    ({"pyproject.toml": '[project]\nrequires-python = ">=3.15"\n'}, "matches no supported Python version (supported: 3.11, 3.13, 3.14)"),
    ({"pyproject.toml": '[project\n'}, "not valid TOML"),
])
def test_python_version_errors_are_specific(tmp_path, files, fragment):
    res = select(tmp_path, files)
    assert res.returncode == 1
    assert fragment in res.stderr


def test_python_bin_stack_prints_stack_or_heroku_style_error(tmp_path):
    stack = BUILDPACKS_DIR / "python" / "bin" / "stack"
    (tmp_path / ".python-version").write_text("3.13")
    assert subprocess.run([stack, tmp_path], capture_output=True, text=True).stdout == "debian-trixie\n"
    (tmp_path / ".python-version").write_text("3.9")
    res = subprocess.run([stack, tmp_path], capture_output=True, text=True)
    assert res.returncode == 1
    assert _failure_reason(res.stdout.splitlines()).startswith("unsupported Python version 3.9")


@pytest.mark.parametrize("files, detected", [
    ({"requirements.txt": ""}, ["python"]),
    ({"pyproject.toml": ""}, ["python"]),
    ({"go.mod": "module x\n"}, ["go"]),
    ({"index.html": ""}, []),
])
def test_detect(tmp_path, files, detected):
    for name, content in files.items():
        (tmp_path / name).write_text(content)
    found = [bp for bp in ("python", "go")
             if subprocess.run([BUILDPACKS_DIR / bp / "bin" / "detect", tmp_path], capture_output=True).returncode == 0]
    assert found == detected


def test_python_release_defaults_to_app_py_only(tmp_path):
    release = BUILDPACKS_DIR / "python" / "bin" / "release"
    out = subprocess.run([release, tmp_path], capture_output=True, text=True).stdout
    assert _release_defaults(out.splitlines()) == {}
    (tmp_path / "app.py").write_text("")
    out = subprocess.run([release, tmp_path], capture_output=True, text=True).stdout
    assert _release_defaults(out.splitlines()) == {"web": "python app.py"}


def test_failure_reason_is_first_error_line_not_warning():
    lines = ["-----> x", " !     Warning: something odd", "       pip output", " !     unsatisfiable requirement: nope", " !     later"]
    assert _failure_reason(lines) == "unsatisfiable requirement: nope"
    assert _failure_reason(["-----> fine"]) is None


def test_env_dir_has_one_file_per_var_and_rejects_bad_names(tmp_path):
    d = _write_env_dir(tmp_path / "env", {"GREETING": "hi there", "DATABASE_URL": "postgres://x"})
    assert sorted(p.name for p in d.iterdir()) == ["DATABASE_URL", "GREETING"]
    assert (d / "GREETING").read_text() == "hi there"
    with pytest.raises(BuildError, match="invalid config var name"):
        _write_env_dir(tmp_path / "env2", {"../etc/passwd": "x"})


def test_host_pip_env_keeps_network_settings_but_not_local_indexes(tmp_path, monkeypatch):
    conf = tmp_path / "pip.conf"
    conf.write_text("[global]\nindex-url = https://mirror.example/simple\n"
                    "extra-index-url = file:///opt/pypi/simple https://extra.example/simple\n"
                    "find-links = /opt/wheels\ntimeout = 60\n")
    monkeypatch.setenv("PIP_CONFIG_FILE", str(conf))
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    env = sandbox.host_pip_env()
    assert env["PIP_INDEX_URL"] == "https://mirror.example/simple"
    assert env["PIP_EXTRA_INDEX_URL"] == "https://extra.example/simple"
    assert env["PIP_DEFAULT_TIMEOUT"] == "60"
    assert env["HTTPS_PROXY"] == "http://proxy.example:3128"
    assert env["PIP_CERT"] == "/etc/ssl/certs/ca-certificates.crt"
    assert not any("/opt/wheels" in v or "file://" in v for v in env.values())


def test_base_env_does_not_leak_platform_environment(monkeypatch):
    monkeypatch.setenv("VIRTUAL_ENV", "/work/main/.venv")
    monkeypatch.setenv("UNICLOUD_SECRET", "x")
    env = sandbox.base_env("debian-trixie")
    assert env["STACK"] == "debian-trixie" and env["LANG"] == "C.UTF-8"
    assert "VIRTUAL_ENV" not in env and "UNICLOUD_SECRET" not in env
    assert ".venv" not in env["PATH"]


def test_stack_keys_differ_by_recipe_and_unknown_stack_is_clear():
    keys = {name: stack_path(name).name for name in STACKS}
    assert len(set(keys.values())) == len(STACKS)
    with pytest.raises(StackError, match="unknown stack 'debian-potato'; known stacks: debian-bookworm"):
        stack_path("debian-potato")

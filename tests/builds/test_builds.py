"""Real builds of every sample app in real (cached) stacks; the built root serves GET /."""

import json
import os
import shutil

import pytest

from .conftest import APPS, assert_no_mounts, build, fetch_from_web_process, needs_root

pytestmark = [pytest.mark.slow, needs_root]

CASES = {
    # app: (stack, buildpack, text the page must contain besides the greeting)
    "python-hello": ("debian-bookworm", "python", "from python-hello!"),
    "flask": ("debian-bookworm", "python", "from flask!"),
    "fastapi": ("debian-bookworm", "python", "from fastapi!"),
    "django": ("debian-trixie", "python", "css: /static/site."),
    "cext": ("debian-bookworm", "python", "&lt;from cext&gt;"),
    "go-hello": ("debian-bookworm-go", "go", "from go-hello!"),
    "poetry-waitress": ("debian-bookworm", "python", "from poetry-waitress!"),
    "pyproject-314": ("debian-sid", "python", "from pyproject-314!"),
}


@pytest.mark.parametrize("app", CASES)
def test_sample_app_builds_and_serves_config(app, tmp_path):
    stack, buildpack, marker = CASES[app]
    out, log = build(APPS / app, tmp_path, env={"GREETING": f"Howdy-{app}"})
    with out:
        assert (out.stack, out.buildpack) == (stack, buildpack)
        m = out.manifest
        on_disk = json.loads((out.root / "app/.unicloud/runtime.json").read_text())
        assert on_disk == m
        assert "web" in m["process_types"]
        assert m["workdir"] == "/app"
        if buildpack == "python":
            assert m["runtime"] == "python"
            assert (out.root / m["interpreter"].lstrip("/")).is_file()
            assert (out.root / m["stdlib"].lstrip("/") / "os.py").is_file()
            assert (out.root / m["site_packages"][0].lstrip("/")).is_dir()
            assert m["env"]["PYTHONUNBUFFERED"] == "1" and m["env"]["PATH"].startswith("/app/.venv/bin:")
            # deterministic bytecode for the app itself
            pyc = next((out.root / "app").glob("__pycache__/*.pyc"), None) or next((out.root / "app").rglob("*.pyc"))
            assert int.from_bytes(pyc.read_bytes()[4:8], "little") & 0b11 == 0b01  # unchecked hash-based
        else:
            assert m["runtime"] == "go"
            binary = out.root / m["interpreter"].lstrip("/")
            assert binary.read_bytes()[:4] == b"\x7fELF"
            assert m["include"] == [m["interpreter"]]
            assert m["process_types"]["web"] == m["interpreter"]
        body = fetch_from_web_process(out, {"GREETING": f"Howdy-{app}"})
        assert f"Howdy-{app}" in body and marker in body
        if app == "cext":
            assert "speedups: /app/.venv/lib/python3.11/site-packages/markupsafe/_speedups" in body
            assert any(p.endswith(".so") and "markupsafe/_speedups" in p for p in m["elf"])
            assert "Building wheel for markupsafe" in log.text  # compiled here, not a wheel from PyPI
        if app == "poetry-waitress":
            assert "Installing dependencies from poetry.lock with poetry" in log.text
        if app == "pyproject-314":
            assert m["version"].startswith("3.14.") and "Installing pyproject.toml dependencies with pip" in log.text
        if app == "django":
            assert "static file" in log.text and (out.root / "app/staticfiles/staticfiles.json").is_file()
    assert_no_mounts(tmp_path)


def venv_files(venv) -> set[str]:
    """Every path in a virtualenv, relative, without following symlinks (lib64 -> lib)."""
    out = set()
    for dirpath, dirnames, filenames in os.walk(venv):
        rel = os.path.relpath(dirpath, venv)
        out.update(os.path.normpath(os.path.join(rel, n)) + ("/" if n in dirnames else "")
                   for n in dirnames + filenames)
    return out


def test_second_python_build_reuses_the_cache(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(APPS / "flask", src)
    cache = tmp_path / "cache"
    out, cold = build(src, tmp_path / "1", cache=cache)
    with out:
        cold_venv = venv_files(out.root / "app/.venv")
    assert "Installing requirements with pip" in cold.text

    (src / "app.py").write_text((src / "app.py").read_text().replace("from flask!", "from flask, again!"))
    out, warm = build(src, tmp_path / "2", cache=cache)
    with out:
        assert "Restoring cached virtualenv (requirements.txt unchanged)" in warm.text
        assert "Installing requirements with pip" not in warm.text
        assert "from flask, again!" in (out.root / "app/app.py").read_text()
        assert "from flask, again!" in fetch_from_web_process(out, {})
        # Restored without pip (never shipped, nothing installs after a restore), all else as built.
        pip = "lib/python3.11/site-packages/pip/"
        assert venv_files(out.root / "app/.venv") == {p for p in cold_venv if not p.startswith(pip)}
        assert any(p.startswith(pip) for p in cold_venv)

    (src / "requirements.txt").write_text((src / "requirements.txt").read_text() + "itsdangerous\n")
    out, changed = build(src, tmp_path / "3", cache=cache)
    out.close()
    assert "Dependencies changed: rebuilding the virtualenv" in changed.text
    assert "File was already downloaded /cache/wheels/flask-" in changed.text  # wheels from CACHE_DIR
    assert "Downloading flask-" not in changed.text


def test_second_go_build_reuses_the_build_cache(tmp_path):
    cache = tmp_path / "cache"
    out, cold = build(APPS / "go-hello", tmp_path / "1", cache=cache)
    out.close()
    assert "Using the Go build cache" not in cold.text
    out, warm = build(APPS / "go-hello", tmp_path / "2", cache=cache)
    out.close()
    assert "Using the Go build cache from earlier builds" in warm.text
    assert any((cache / "go" / "build").iterdir())

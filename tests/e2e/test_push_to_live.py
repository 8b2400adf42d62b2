"""The product's promise, end to end: push → build → image → boot → route, then release again,
roll back, and a failed build that leaves the running release alone."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.slow


def test_push_deploy_config_rollback(developer, tmp_path):
    repo = developer.checkout("python-hello", tmp_path / "hello")
    out = developer.cli("create", "hello-e2e", cwd=repo).stdout
    assert "hello-e2e" in out
    remote = developer.git("remote", "get-url", "unicloud", cwd=repo).stdout.strip()
    assert remote == f"ssh://git@127.0.0.1:{developer.platform.settings.ssh_port}/hello-e2e.git"

    push = developer.git("push", "unicloud", "main", cwd=repo)
    output = push.stderr
    assert "remote: -----> Python app detected" in output
    assert "Released v1" in output
    assert "http://hello-e2e.localhost:" in output
    assert "Hello from python-hello!" in developer.wait_for_body("hello-e2e", "Hello from python-hello!")

    # A config change is a new release of the same image: no rebuild.
    builds_before = json.loads(developer.cli("builds", "-a", "hello-e2e", "--json").stdout)
    developer.cli("config:set", "GREETING=Bonjour", "-a", "hello-e2e")
    developer.wait_for_body("hello-e2e", "Bonjour from python-hello!")
    assert json.loads(developer.cli("builds", "-a", "hello-e2e", "--json").stdout) == builds_before

    releases = json.loads(developer.cli("releases", "-a", "hello-e2e", "--json").stdout)
    assert [r["version"] for r in releases][:2] == [2, 1]

    # Roll back to v1's image and config.
    developer.cli("rollback", "v1", "-a", "hello-e2e")
    developer.wait_for_body("hello-e2e", "Hello from python-hello!")
    releases = json.loads(developer.cli("releases", "-a", "hello-e2e", "--json").stdout)
    assert releases[0]["version"] == 3 and "Rollback to v1" in releases[0]["description"]

    # A failing build rejects the push and keeps the running release.
    (repo / "requirements.txt").write_text("this-package-does-not-exist-unicloud==99.0\n")
    developer.git("add", "-A", cwd=repo)
    developer.git("commit", "-qm", "break the build", cwd=repo)
    bad = developer.git("push", "unicloud", "main", cwd=repo, check=False)
    assert bad.returncode != 0
    assert "! [remote rejected] main -> main (build failed:" in bad.stderr
    assert "Hello from python-hello!" in developer.get("hello-e2e").text

    # The image is inspectable and audited.
    info = json.loads(developer.cli("images:inspect", "-a", "hello-e2e", "--json").stdout)
    assert info["audit"]["passed"] is True

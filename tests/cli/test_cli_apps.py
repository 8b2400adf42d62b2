"""The real `unicloud` script: credentials, apps, git remote, keys, access, drains, errors."""

from __future__ import annotations

import json
import stat
import subprocess

from tests.api.test_apps import ssh_public_key


def test_not_logged_in_and_login_logout(cli):
    line = cli.fails("apps", logged_in=False)
    assert "not logged in" in line and "unicloud login" in line

    line = cli.fails("login", "--api-url", cli.api_url, "--token", "uc_wrong", logged_in=False)
    assert "invalid API token" in line

    out = cli.ok("login", "--api-url", cli.api_url, "--token", cli.token, logged_in=False)
    assert out.startswith("Logged in as admin@localhost")
    creds = cli.home / ".config" / "unicloud" / "credentials.json"
    assert stat.S_IMODE(creds.stat().st_mode) == 0o600
    assert stat.S_IMODE(creds.parent.stat().st_mode) == 0o700
    assert json.loads(creds.read_text()) == {"api_url": cli.api_url, "token": cli.token}
    assert cli.ok("auth:whoami", logged_in=False).strip() == "admin@localhost"

    assert cli.ok("logout", logged_in=False).strip() == "Logged out"
    assert not creds.exists()
    cli.fails("apps", logged_in=False)

    # The token can also come on stdin (scripts), never on the command line.
    cli.ok("login", "--api-url", cli.api_url, logged_in=False, input=cli.token + "\n")
    assert cli.ok("apps", "--json", logged_in=False).strip() == "[]"


def test_unreachable_api_is_one_clear_line(cli):
    cli.extra_env = {"UNICLOUD_API_URL": "http://127.0.0.1:1"}
    line = cli.fails("apps", logged_in=False, input="")
    assert line.startswith("error: not logged in")
    cli.extra_env = {"UNICLOUD_API_URL": "http://127.0.0.1:1", "UNICLOUD_API_TOKEN": "uc_x"}
    line = cli.fails("apps", logged_in=False)
    assert line.startswith("error: cannot reach the unicloud API at http://127.0.0.1:1")
    assert "unicloud up" in line


def test_create_in_a_git_repo_adds_the_remote_and_infers_the_app(cli):
    repo = cli.repo("myapp")
    out = cli.ok("create", "myapp", cwd=repo)
    ssh = f"ssh://git@127.0.0.1:{cli.settings.ssh_port}/myapp.git"
    assert out.splitlines() == [
        "Creating myapp... done",
        f"http://myapp.localhost:{cli.settings.router_port}/ | {ssh}",
        "Git remote unicloud added",
    ]
    assert cli.git("remote", "get-url", "unicloud", cwd=repo) == ssh

    # Inside the repo the app comes from the remote; -a wins over it.
    info = json.loads(cli.ok("apps:info", "--json", cwd=repo))
    assert info["name"] == "myapp" and info["git_url"] == ssh
    assert "=== myapp" in cli.ok("apps:info", cwd=repo)
    assert cli.ok("open", cwd=repo).strip() == f"http://myapp.localhost:{cli.settings.router_port}/"
    assert "app 'other' not found" in cli.fails("apps:info", "-a", "other", cwd=repo)

    assert cli.ok("apps") == "=== Apps\nmyapp\n"
    assert [a["name"] for a in json.loads(cli.ok("apps", "--json"))] == ["myapp"]


def test_create_outside_git_generated_name_and_errors(cli):
    out = cli.ok("create")
    first = out.splitlines()[0]
    assert first.startswith("Creating app... done, ")
    name = first.rsplit(" ", 1)[1]
    assert "Git remote" not in out
    assert name in cli.ok("apps")

    line = cli.fails("create", "Bad_Name")
    assert "^[a-z][a-z0-9-]{1,29}$" in line
    cli.ok("create", "taken")
    assert "already taken" in cli.fails("create", "taken")
    assert "no app specified" in cli.fails("apps:info")
    assert "not found" in cli.fails("config", "-a", "ghost")


def test_destroy_needs_confirm_and_removes_the_remote(cli):
    repo = cli.repo("gone")
    cli.ok("create", "gone", cwd=repo)
    assert "--confirm gone" in cli.fails("apps:destroy", cwd=repo)
    assert "--confirm gone" in cli.fails("apps:destroy", "gone", "--confirm", "other")
    out = cli.ok("apps:destroy", "--confirm", "gone", cwd=repo)
    assert out.splitlines() == ["Destroying gone... done", "Git remote unicloud removed"]
    assert "unicloud" not in cli.git("remote", cwd=repo)
    assert cli.ok("apps", "--json").strip() == "[]"


def test_keys(cli):
    ssh = cli.home / ".ssh"
    ssh.mkdir()
    (ssh / "id_ed25519.pub").write_text(ssh_public_key("dev@laptop") + "\n")
    out = cli.ok("keys:add")
    assert out.startswith(f"Uploading {ssh / 'id_ed25519.pub'} SSH key... done\nSHA256:")
    assert "already registered" in cli.fails("keys:add")
    listed = json.loads(cli.ok("keys", "--json"))
    assert [k["comment"] for k in listed] == ["dev@laptop"]
    assert "=== admin@localhost Keys" in cli.ok("keys")

    (cli.home / "junk.pub").write_text("garbage\n")
    assert "not an SSH public key" in cli.fails("keys:add", str(cli.home / "junk.pub"))
    assert "cannot read" in cli.fails("keys:add", str(cli.home / "missing.pub"))
    (cli.home / "stray").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn...\n-----END OPENSSH PRIVATE KEY-----\n")
    assert "is a private key" in cli.fails("keys:add", str(cli.home / "stray"))

    other = cli.home / "ci.pub"
    other.write_text(ssh_public_key("ci") + "\n")
    fp = cli.ok("keys:add", str(other)).splitlines()[-1]
    cli.ok("keys:remove", fp)
    cli.ok("keys:remove", "dev@laptop")
    assert json.loads(cli.ok("keys", "--json")) == []
    assert "no SSH key matching" in cli.fails("keys:remove", "dev@laptop")


def test_access_and_drains(cli):
    cli.ok("create", "shared")
    assert cli.ok("access:add", "friend@example.com", "-a", "shared") == \
        "Adding friend@example.com access to the app shared... done\n"
    members = json.loads(cli.ok("access", "-a", "shared", "--json"))
    assert [(m["email"], m["role"]) for m in members] == [("admin@localhost", "owner"), ("friend@example.com", "member")]
    assert "already a member" in cli.fails("access:add", "friend@example.com", "-a", "shared")

    url = "syslog+tcp://logs.example.com:514"
    assert cli.ok("drains:add", url, "-a", "shared").strip() == f"Successfully added drain {url}"
    assert "scheme must be one of" in cli.fails("drains:add", "ftp://x.example.com", "-a", "shared")
    assert [d["url"] for d in json.loads(cli.ok("drains", "-a", "shared", "--json"))] == [url]
    assert cli.ok("drains", "-a", "shared") == f"=== shared Drains\n{url}\n"
    cli.ok("drains:remove", url, "-a", "shared")
    assert cli.ok("drains", "-a", "shared").strip() == "shared has no drains"


def test_up_rejects_bad_ports(cli):
    assert "invalid port 0" in cli.fails("up", "--api-port", "0", "--data-dir", str(cli.home / "d"))


def test_real_git_reaches_the_git_mount_of_the_api(cli):
    """`git ls-remote` over smart HTTP through the API's /git mount, with the token as password."""
    import pytest

    pytest.importorskip("unicloud.git.http")
    cli.ok("create", "gitapp")
    url = f"http://git:{cli.token}@127.0.0.1:{cli.settings.api_port}/git/gitapp.git"
    repo = cli.repo("clone-src")
    assert cli.git("ls-remote", url, cwd=repo) == ""  # an empty repository, reachable and authorised
    res = subprocess.run(["git", "ls-remote", url.replace(cli.token, "wrong")], cwd=repo,
                         env={**cli.env(), "GIT_TERMINAL_PROMPT": "0"}, capture_output=True, text=True)
    assert res.returncode != 0


def test_usage_errors_are_one_line_too(cli):
    assert "Missing argument 'KEY=VALUE...'" in cli.fails("config:set")
    assert "No such command 'nope'" in cli.fails("nope")
    assert "Invalid value for '-n'" in cli.fails("logs", "-n", "abc", "-a", "x")
    res = cli.run("ps", "--bogus")
    assert res.returncode == 2 and res.stderr == "error: No such option: --bogus (see `unicloud ps --help`)\n"

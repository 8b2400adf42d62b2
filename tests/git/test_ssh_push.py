"""`git push` over SSH with the real git and OpenSSH clients; the build step is the fake builder."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time


from tests.git.conftest import SSHRemote
from tests.git.helpers import APP, commit, git, make_workdir, server_ref, ssh_command, wait_for_ref


def _read_stderr_until(proc: subprocess.Popen, needle: str, timeout: float = 60) -> str:
    """Read the push's stderr line by line until `needle` shows up (while git is still running)."""
    seen = ""
    deadline = time.monotonic() + timeout
    while needle not in seen:
        assert time.monotonic() < deadline, f"{needle!r} never appeared; got:\n{seen}"
        line = proc.stderr.readline()
        assert line, f"stderr closed before {needle!r}; got:\n{seen}"
        seen += line
    return seen


def test_first_push_streams_live_and_redeploy(env, alice, builder, tmp_path):
    wd = make_workdir(tmp_path / "wd")
    builder.release.clear()  # hold the build after its first lines
    proc = subprocess.Popen(["git", "push", alice.url(), "main"], cwd=wd, text=True,
                            env=dict(os.environ, **alice.env), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    early = _read_stderr_until(proc, "remote: -----> Python app detected")
    assert proc.poll() is None, "the build lines must arrive while the push is still running"
    assert server_ref(env.settings, APP) is None, "main must not move before the deploy finished"
    builder.release.set()
    out, err = proc.communicate(timeout=60)
    err = early + err
    assert proc.returncode == 0, err
    assert "remote: Released v1" in err
    assert f"remote: {env.settings.app_url(APP)}" in err
    head = git("rev-parse", "HEAD", cwd=wd).stdout.strip()
    assert server_ref(env.settings, APP) == head
    assert (env.settings.repos_dir / f"{APP}.git" / "HEAD").read_text().strip() == "ref: refs/heads/main"

    second = commit(wd, "second")
    p = git("push", alice.url(), "main", cwd=wd, env_extra=alice.env)
    assert "remote: Released v2" in p.stderr
    assert server_ref(env.settings, APP) == second
    assert builder.deployed == [head, second]


def test_build_failure_rejects_push_and_keeps_branch(env, alice, builder, tmp_path):
    wd = make_workdir(tmp_path / "wd")
    git("push", alice.url(), "main", cwd=wd, env_extra=alice.env)
    good = server_ref(env.settings, APP)
    commit(wd, "break it BUILD-FAIL")
    p = git("push", alice.url(), "main", cwd=wd, env_extra=alice.env, check=False)
    assert p.returncode != 0
    assert "remote: error: requirements.txt is broken" in p.stderr
    assert "! [remote rejected] main -> main (build failed: pip install exited with status 1)" in p.stderr
    assert server_ref(env.settings, APP) == good
    # The fix is pushed on top and deploys.
    fixed = commit(wd, "fix")
    git("push", alice.url(), "main", cwd=wd, env_extra=alice.env)
    assert server_ref(env.settings, APP) == fixed


def test_master_deploys_other_branches_are_only_stored(env, alice, builder, tmp_path):
    wd = make_workdir(tmp_path / "wd")
    git("checkout", "-q", "-b", "feature", cwd=wd)
    feature = commit(wd, "feature work")
    p = git("push", alice.url(), "feature", cwd=wd, env_extra=alice.env)
    assert "remote: Pushed to branch 'feature'; only main or master deploys." in p.stderr
    assert builder.deployed == []
    assert server_ref(env.settings, APP, "refs/heads/feature") == feature

    git("branch", "-q", "-m", "feature", "master", cwd=wd)
    p = git("push", alice.url(), "master", cwd=wd, env_extra=alice.env)
    assert "remote: Released v1" in p.stderr
    assert builder.deployed == [feature]


def test_deleting_main_is_refused(env, alice, tmp_path):
    wd = make_workdir(tmp_path / "wd")
    git("push", alice.url(), "main", cwd=wd, env_extra=alice.env)
    head = server_ref(env.settings, APP)
    p = git("push", alice.url(), ":main", cwd=wd, env_extra=alice.env, check=False)
    assert p.returncode != 0
    assert "deleting main is not allowed" in p.stderr
    assert server_ref(env.settings, APP) == head


def test_clone_and_fetch_by_member(env, alice, tmp_path):
    wd = make_workdir(tmp_path / "wd")
    git("push", alice.url(), "main", cwd=wd, env_extra=alice.env)
    git("clone", "-q", alice.url(), str(tmp_path / "clone"), env_extra=alice.env)
    assert (tmp_path / "clone" / "app.py").read_text() == "print('hello')\n"
    assert git("rev-parse", "HEAD", cwd=tmp_path / "clone").stdout == git("rev-parse", "HEAD", cwd=wd).stdout


def test_repo_path_forms(env, ssh_server, tmp_path):
    """git sends `'myapp.git'` for host:myapp.git and `'/myapp.git'` for ssh://host/myapp.git."""
    wd = make_workdir(tmp_path / "wd")
    key_env = {"GIT_SSH_COMMAND": ssh_command(env.alice_key, ssh_server.port)}
    git("push", f"git@127.0.0.1:{APP}.git", "main", cwd=wd, env_extra=key_env)
    commit(wd, "two")
    git("push", f"ssh://git@127.0.0.1:{ssh_server.port}/{APP}.git", "main", cwd=wd, env_extra=key_env)


def test_unknown_key_and_wrong_user_are_denied(env, ssh_server, tmp_path):
    wd = make_workdir(tmp_path / "wd")
    stranger = SSHRemote(ssh_server.port, env.stranger_key)
    p = git("push", stranger.url(), "main", cwd=wd, env_extra=stranger.env, check=False)
    assert p.returncode != 0
    assert "Permission denied (publickey)" in p.stderr
    p = git("push", f"ssh://root@127.0.0.1:{ssh_server.port}/{APP}.git", "main", cwd=wd,
            env_extra={"GIT_SSH_COMMAND": ssh_command(env.alice_key, ssh_server.port)}, check=False)
    assert p.returncode != 0
    assert "Permission denied (publickey)" in p.stderr
    assert server_ref(env.settings, APP) is None


def test_non_member_and_unknown_app_get_the_same_answer(env, ssh_server, tmp_path):
    wd = make_workdir(tmp_path / "wd")
    alice = SSHRemote(ssh_server.port, env.alice_key)
    p_other = git("push", alice.url("bobs-app"), "main", cwd=wd, env_extra=alice.env, check=False)
    p_none = git("push", alice.url("no-such-app"), "main", cwd=wd, env_extra=alice.env, check=False)
    assert p_other.returncode != 0 and p_none.returncode != 0
    assert "unicloud: app 'bobs-app' not found, or you are not a member of it" in p_other.stderr
    assert "unicloud: app 'no-such-app' not found, or you are not a member of it" in p_none.stderr
    bob = SSHRemote(ssh_server.port, env.bob_key)
    p = git("clone", bob.url(APP), str(tmp_path / "c"), env_extra=bob.env, check=False)
    assert p.returncode != 0
    assert f"app '{APP}' not found, or you are not a member of it" in p.stderr
    assert not (env.settings.repos_dir / "bobs-app.git").exists()


def test_client_disconnect_mid_build_still_deploys_and_moves_ref(env, alice, builder, tmp_path):
    wd = make_workdir(tmp_path / "wd")
    head = git("rev-parse", "HEAD", cwd=wd).stdout.strip()
    builder.release.clear()
    proc = subprocess.Popen(["git", "push", alice.url(), "main"], cwd=wd, env=dict(os.environ, **alice.env),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    assert builder.started.wait(60)
    os.killpg(proc.pid, signal.SIGKILL)  # git and its ssh: the client vanishes mid-build
    proc.wait()
    time.sleep(0.5)
    assert server_ref(env.settings, APP) is None
    builder.release.set()
    wait_for_ref(env.settings, APP, head)
    assert builder.deployed == [head]


def test_push_size_limit(env, ssh_server_factory, tmp_path):
    server = ssh_server_factory(max_push_bytes=200_000)
    alice = SSHRemote(server.port, env.alice_key)
    wd = make_workdir(tmp_path / "wd")
    (wd / "big.bin").write_bytes(os.urandom(1_000_000))
    git("add", "big.bin", cwd=wd)
    git("commit", "-q", "-m", "big", cwd=wd)
    p = git("push", alice.url(), "main", cwd=wd, env_extra=alice.env, check=False)
    assert p.returncode != 0
    assert "push too large: the pack exceeds the 200000 bytes limit (UNICLOUD_MAX_PUSH_BYTES)" in p.stderr
    assert server_ref(env.settings, APP) is None


def test_concurrent_pushes_none_lost(env, ssh_server, builder, tmp_path):
    """20 clients push to main at once; losers are rejected cleanly, pull --rebase and push again."""
    builder.delay = 0.05
    alice = SSHRemote(ssh_server.port, env.alice_key)
    base = make_workdir(tmp_path / "base")
    git("push", alice.url(), "main", cwd=base, env_extra=alice.env)
    clones = []
    for i in range(20):
        d = tmp_path / f"c{i}"
        git("clone", "-q", alice.url(), str(d), env_extra=alice.env)
        commit(d, f"commit from client {i}", name=f"client-{i}.txt")
        clones.append(d)

    rejected_cleanly = []
    errors = []
    landed = []

    def client(i: int, d) -> None:
        for _attempt in range(40):
            p = git("push", "origin", "main", cwd=d, env_extra=alice.env, check=False, timeout=300)
            if p.returncode == 0:
                landed.append(git("rev-parse", "HEAD", cwd=d).stdout.strip())
                return
            clean = ("non-fast-forward" in p.stderr or "[rejected]" in p.stderr or "fetch first" in p.stderr)
            if not clean:
                errors.append(f"client {i}: {p.stderr}")
                return
            rejected_cleanly.append("server" if "moved while you pushed" in p.stderr else "client")
            git("pull", "-q", "--rebase", "origin", "main", cwd=d, env_extra=alice.env, timeout=300)
        errors.append(f"client {i}: never landed")

    threads = [threading.Thread(target=client, args=(i, d)) for i, d in enumerate(clones)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, "\n".join(errors)
    assert len(landed) == 20
    assert rejected_cleanly, "the pushes never overlapped, so the test proved nothing"
    print(f"rejections: {rejected_cleanly.count('server')} by the server's lock/compare-and-swap, "
          f"{rejected_cleanly.count('client')} by git itself (it saw the newer tip)")
    check = tmp_path / "check"
    git("clone", "-q", alice.url(), str(check), env_extra=alice.env)
    log = git("log", "--format=%s", cwd=check).stdout
    for i in range(20):
        assert f"commit from client {i}" in log
        assert (check / f"client-{i}.txt").exists()
    # every landed push deployed exactly once, plus the initial push; nothing else deployed
    assert len(builder.deployed) == 21
    assert set(landed) <= set(builder.deployed)
    assert server_ref(env.settings, APP) == builder.deployed[-1]


def test_deploy_crash_is_reported_not_hung_up(env, tmp_path):
    """If the deploy machinery itself breaks (e.g. Redis down), git still gets a clear rejection."""
    import unicloud.git.ssh as ssh_mod

    def broken_deploy(*args, **kwargs):
        raise ConnectionError("Error 111 connecting to redis")

    server = ssh_mod.GitSSHServer(env.settings, host="127.0.0.1", port=0, deploy=broken_deploy)
    server.start()
    try:
        remote = SSHRemote(server.port, env.alice_key)
        wd = make_workdir(tmp_path / "wd")
        p = git("push", remote.url(), "main", cwd=wd, env_extra=remote.env, check=False)
        assert p.returncode != 0
        assert "! [remote rejected] main -> main (deploy failed: internal error on the server" in p.stderr
        assert server_ref(env.settings, APP) is None
    finally:
        server.stop()

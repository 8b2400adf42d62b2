"""Smart-HTTP push and clone with an API token, under uvicorn+Starlette (as the API mounts it) and wsgiref."""

from __future__ import annotations

import os
import subprocess

import httpx

from tests.git.helpers import APP, git, make_workdir, server_ref, wait_for_ref


def _url(base: str, token: str, app: str = APP) -> str:
    return base.replace("http://", f"http://user:{token}@") + f"/{app}.git"


def test_push_streams_live_then_clone(env, http_base, builder, tmp_path):
    wd = make_workdir(tmp_path / "wd")
    builder.release.clear()
    proc = subprocess.Popen(["git", "push", _url(http_base, env.alice_token), "main"], cwd=wd, text=True,
                            env=dict(os.environ, GIT_TERMINAL_PROMPT="0"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    seen = ""
    while "remote: -----> Python app detected" not in seen:
        line = proc.stderr.readline()
        assert line, seen
        seen += line
    assert proc.poll() is None, "build output must arrive while the push runs"
    builder.release.set()
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, seen + err
    assert "remote: Released v1" in err
    head = git("rev-parse", "HEAD", cwd=wd).stdout.strip()
    assert server_ref(env.settings, APP) == head

    git("clone", "-q", _url(http_base, env.alice_token), str(tmp_path / "clone"))
    assert git("rev-parse", "HEAD", cwd=tmp_path / "clone").stdout.strip() == head


def test_large_push_uses_chunked_body(env, http_base, builder, tmp_path):
    """git sends bodies over http.postBuffer (1 MiB) chunked; both servers must decode them once."""
    wd = make_workdir(tmp_path / "wd", files={"blob.bin": os.urandom(3 * 1024 * 1024).hex()[:3_000_000]})
    p = git("push", _url(http_base, env.alice_token), "main", cwd=wd,
            env_extra={"GIT_TRACE_CURL": "1", "GIT_TRACE_CURL_NO_DATA": "1"})
    assert "Transfer-Encoding: chunked" in p.stderr
    assert "remote: Released v1" in p.stderr
    assert server_ref(env.settings, APP) == git("rev-parse", "HEAD", cwd=wd).stdout.strip()


def test_build_failure_rejected_over_http(env, http_base, tmp_path):
    wd = make_workdir(tmp_path / "wd", message="BUILD-FAIL first")
    p = git("push", _url(http_base, env.alice_token), "main", cwd=wd, check=False)
    assert p.returncode != 0
    assert "! [remote rejected] main -> main (build failed: pip install exited with status 1)" in p.stderr
    assert server_ref(env.settings, APP) is None


def test_other_branch_over_http(env, http_base, builder, tmp_path):
    wd = make_workdir(tmp_path / "wd")
    p = git("push", _url(http_base, env.alice_token), "main:feature", cwd=wd)
    assert "remote: Pushed to branch 'feature'; only main or master deploys." in p.stderr
    assert builder.deployed == []


def test_bad_token_and_non_member(env, http_base, tmp_path):
    wd = make_workdir(tmp_path / "wd")
    p = git("push", _url(http_base, "uc_not-a-token"), "main", cwd=wd, check=False)
    assert p.returncode != 0
    assert "Authentication failed" in p.stderr
    p = git("push", f"{http_base}/{APP}.git", "main", cwd=wd, check=False)  # no credentials at all
    assert p.returncode != 0
    p = git("push", _url(http_base, env.bob_token), "main", cwd=wd, check=False)
    assert p.returncode != 0
    assert f"app '{APP}' not found, or you are not a member of it" in p.stderr
    p = git("push", _url(http_base, env.alice_token, "no-such-app"), "main", cwd=wd, check=False)
    assert "app 'no-such-app' not found, or you are not a member of it" in p.stderr
    assert server_ref(env.settings, APP) is None


def test_only_smart_routes_are_served(env, http_base, tmp_path):
    wd = make_workdir(tmp_path / "wd")
    git("push", _url(http_base, env.alice_token), "main", cwd=wd)
    auth = ("user", env.alice_token)
    with httpx.Client(base_url=f"{http_base}/{APP}.git", auth=auth, timeout=30) as c:
        for path in ("/HEAD", "/objects/info/packs", "/config", "/info/refs/../HEAD"):
            assert c.get(path).status_code == 404, path
        pack = next((env.settings.repos_dir / f"{APP}.git" / "objects" / "pack").glob("*.pack")).name
        assert c.get(f"/objects/pack/{pack}").status_code == 404
        r = c.get("/info/refs")  # dumb protocol discovery
        assert r.status_code == 403 and "dumb HTTP protocol is not supported" in r.text
        assert c.post("/info/refs?service=git-upload-pack").status_code == 405
        assert c.get("/git-receive-pack").status_code == 405
        r = c.get("/info/refs", params={"service": "git-upload-pack"})
        assert r.status_code == 200 and r.headers["content-type"] == "application/x-git-upload-pack-advertisement"
    assert httpx.get(f"{http_base}/{APP}.git/info/refs?service=git-upload-pack").status_code == 401


def test_client_disconnect_mid_build_over_http(env, http_base, builder, tmp_path):
    import signal

    wd = make_workdir(tmp_path / "wd")
    head = git("rev-parse", "HEAD", cwd=wd).stdout.strip()
    builder.release.clear()
    proc = subprocess.Popen(["git", "push", _url(http_base, env.alice_token), "main"], cwd=wd,
                            env=dict(os.environ, GIT_TERMINAL_PROMPT="0"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    assert builder.started.wait(60)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    builder.release.set()
    wait_for_ref(env.settings, APP, head)
    assert builder.deployed == [head]


def test_gzip_encoded_upload_pack_request(env, http_base, tmp_path):
    """git gzips large fetch negotiations; the body must be inflated before dulwich reads it."""
    import gzip

    wd = make_workdir(tmp_path / "wd")
    git("push", _url(http_base, env.alice_token), "main", cwd=wd)
    head = git("rev-parse", "HEAD", cwd=wd).stdout.strip()
    want = f"want {head} side-band-64k thin-pack ofs-delta\n".encode()
    body = b"%04x" % (len(want) + 4) + want + b"0000" + b"0009done\n"
    r = httpx.post(f"{http_base}/{APP}.git/git-upload-pack", content=gzip.compress(body),
                   auth=("user", env.alice_token), timeout=30,
                   headers={"Content-Type": "application/x-git-upload-pack-request", "Content-Encoding": "gzip"})
    assert r.status_code == 200, r.text
    assert b"PACK" in r.content

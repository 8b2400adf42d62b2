"""Broken packs are refused before any ref moves, and leave the repository usable.

git itself never sends a broken pack, so this test speaks receive-pack by hand over the real
OpenSSH client: ref command, then a truncated, corrupted or incomplete pack.
"""

from __future__ import annotations

import subprocess

import pytest
from dulwich.protocol import Protocol

from tests.git.helpers import APP, commit, git, make_workdir, server_ref, ssh_command

ZERO = "0" * 40


def _raw_push(env, port, old: str, new: str, pack: bytes) -> list[str]:
    """Send one ref update and `pack`; return the report-status lines."""
    cmd = ssh_command(env.alice_key, port).split() + ["git@127.0.0.1", f"git-receive-pack '{APP}.git'"]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proto = Protocol(proc.stdout.read, lambda b: (proc.stdin.write(b), proc.stdin.flush()))
    while proto.read_pkt_line() is not None:
        pass  # ref advertisement
    proto.write_pkt_line(f"{old} {new} refs/heads/main\0report-status\n".encode())
    proto.write_pkt_line(None)
    try:
        proc.stdin.write(pack)
        proc.stdin.close()
    except BrokenPipeError:
        pass
    lines = []
    while True:
        pkt = proto.read_pkt_line()
        if pkt is None:
            break
        lines.append(pkt.decode().rstrip("\n"))
    proc.wait(timeout=30)
    return lines


def _pack(wd, objects: list[str]) -> bytes:
    return subprocess.run(["git", "pack-objects", "--stdout", "-q"], cwd=wd, input="\n".join(objects).encode() + b"\n",
                          capture_output=True, check=True).stdout


@pytest.fixture
def pushed(env, alice, tmp_path):
    """A repo with one deployed commit and a local commit on top whose objects we can pack."""
    wd = make_workdir(tmp_path / "wd")
    git("push", alice.url(), "main", cwd=wd, env_extra=alice.env)
    old = server_ref(env.settings, APP)
    new = commit(wd, "next", name="new-file.txt", content="new content " * 1000)
    objs = git("rev-list", "--objects", f"{old}..{new}", cwd=wd).stdout.split("\n")
    objects = [line.split(" ")[0] for line in objs if line]
    return wd, old, new, objects


def _assert_intact(env, old, alice, wd):
    assert server_ref(env.settings, APP) == old
    repo = env.settings.repos_dir / f"{APP}.git"
    subprocess.run(["git", "--git-dir", str(repo), "fsck", "--no-dangling"], check=True, capture_output=True)
    # and the real push still works afterwards
    git("push", alice.url(), "main", cwd=wd, env_extra=alice.env)


def test_truncated_pack(env, alice, ssh_server, pushed):
    wd, old, new, objects = pushed
    pack = _pack(wd, objects)
    report = _raw_push(env, ssh_server.port, old, new, pack[: len(pack) // 2])
    assert report[0].startswith("unpack invalid pack:"), report
    assert report[1].startswith("ng refs/heads/main invalid pack:"), report
    _assert_intact(env, old, alice, wd)


def test_corrupted_pack(env, alice, ssh_server, pushed):
    wd, old, new, objects = pushed
    pack = bytearray(_pack(wd, objects))
    for i in range(40, 60):
        pack[i] ^= 0xFF
    report = _raw_push(env, ssh_server.port, old, new, bytes(pack))
    assert report[0].startswith("unpack invalid pack:"), report
    assert report[1].startswith("ng refs/heads/main"), report
    _assert_intact(env, old, alice, wd)


def test_garbage_instead_of_pack(env, alice, ssh_server, pushed):
    wd, old, new, _objects = pushed
    report = _raw_push(env, ssh_server.port, old, new, b"this is not a pack at all" * 10)
    assert report[0].startswith("unpack invalid pack:"), report
    _assert_intact(env, old, alice, wd)


def test_pack_missing_objects(env, alice, ssh_server, builder, pushed):
    """A well-formed pack that lacks the new blob: stored, but the ref must not point at it."""
    wd, old, new, objects = pushed
    blob = git("rev-parse", f"{new}:new-file.txt", cwd=wd).stdout.strip()
    report = _raw_push(env, ssh_server.port, old, new, _pack(wd, [o for o in objects if o != blob]))
    assert report[0] == "unpack ok", report
    assert report[1].startswith(f"ng refs/heads/main missing blob {blob[:12]} (new-file.txt)"), report
    assert builder.deployed == [old], "an incomplete commit must never reach the build"
    _assert_intact(env, old, alice, wd)


def test_stale_temp_packs_are_swept(env, alice, ssh_server, pushed):
    """A refused pack's temp file is removed by a later push once it is old enough."""
    import os
    import time

    wd, old, new, objects = pushed
    _raw_push(env, ssh_server.port, old, new, _pack(wd, objects)[:100])
    objdir = env.settings.repos_dir / f"{APP}.git" / "objects"
    leftovers = list(objdir.glob("tmp_pack_*"))
    assert leftovers
    long_ago = time.time() - 7200
    for tmp in leftovers:
        os.utime(tmp, (long_ago, long_ago))
    git("push", alice.url(), "main", cwd=wd, env_extra=alice.env)
    assert not any(t.exists() for t in leftovers)

"""Everything but git over SSH is refused: with a readable reason where the protocol allows one."""

from __future__ import annotations

import subprocess

import paramiko
import pytest
from paramiko.common import cMSG_CHANNEL_REQUEST
from paramiko.message import Message

from tests.git.helpers import APP, ssh_command


def _ssh(env, port, *args, timeout=30) -> subprocess.CompletedProcess:
    cmd = ssh_command(env.alice_key, port).split() + list(args)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("args, reason", [
    (["-T", "git@127.0.0.1"], "interactive shells are not available"),
    (["-tt", "git@127.0.0.1"], "PTY allocation is not allowed"),
    (["-tt", "git@127.0.0.1", f"git-receive-pack '{APP}.git'"], "PTY allocation is not allowed"),
    (["git@127.0.0.1", "ls -la"], "command not allowed: 'ls -la'"),
    (["git@127.0.0.1", f"git-upload-archive '{APP}.git'"], "command not allowed"),
    (["git@127.0.0.1", "git-receive-pack '../../etc.git'"], "invalid repository '../../etc.git'"),
    (["git@127.0.0.1", "git-receive-pack 'myapp.git'; rm -rf /"], "command not allowed"),
    (["-s", "git@127.0.0.1", "sftp"], "subsystem 'sftp' is not available"),
])
def test_session_requests_refused_with_reason(env, ssh_server, args, reason):
    p = _ssh(env, ssh_server.port, *args)
    assert p.returncode == 1, p.stderr
    assert f"unicloud: {reason}" in p.stderr
    assert len([line for line in p.stderr.splitlines() if line.startswith("unicloud:")]) == 1


def test_stdio_port_forwarding_refused(env, ssh_server):
    p = _ssh(env, ssh_server.port, "-W", f"127.0.0.1:{ssh_server.port}", "git@127.0.0.1")
    assert p.returncode == 255
    assert "stdio forwarding failed" in p.stderr


def test_remote_port_forwarding_refused(env, ssh_server):
    p = _ssh(env, ssh_server.port, "-N", "-o", "ExitOnForwardFailure=yes", "-R", "0:127.0.0.1:9",
             "git@127.0.0.1")
    assert p.returncode == 255
    assert "remote port forwarding failed" in p.stderr


@pytest.fixture
def paramiko_session(env, ssh_server):
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    client.connect("127.0.0.1", port=ssh_server.port, username="git", key_filename=str(env.alice_key),
                   look_for_keys=False, allow_agent=False)
    chan = client.get_transport().open_session()
    yield client, chan
    client.close()


def test_x11_forwarding_refused(paramiko_session):
    _client, chan = paramiko_session
    with pytest.raises(paramiko.SSHException):
        chan.request_x11()


def test_agent_forwarding_refused(paramiko_session):
    """OpenSSH asks without want-reply; ask with it so the server's answer is visible."""
    client, chan = paramiko_session
    m = Message()
    m.add_byte(cMSG_CHANNEL_REQUEST)
    m.add_int(chan.remote_chanid)
    m.add_string("auth-agent-req@openssh.com")
    m.add_boolean(True)
    chan._event_pending()
    client.get_transport()._send_user_message(m)
    with pytest.raises(paramiko.SSHException):
        chan._wait_for_event()


def test_direct_tcpip_channel_refused(paramiko_session, ssh_server):
    client, _chan = paramiko_session
    with pytest.raises(paramiko.ChannelException) as info:
        client.get_transport().open_channel("direct-tcpip", ("127.0.0.1", ssh_server.port), ("127.0.0.1", 1))
    assert info.value.code == paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED


def test_server_survives_garbage(env, ssh_server, tmp_path):
    """A client that sends junk instead of SSH, or hangs up mid-handshake, does not hurt others."""
    import socket

    for payload in (b"GET / HTTP/1.0\r\n\r\n", b"SSH-2.0-junk\r\n" + b"\x00" * 64, b""):
        with socket.create_connection(("127.0.0.1", ssh_server.port), timeout=5) as s:
            s.sendall(payload)
    p = _ssh(env, ssh_server.port, "git@127.0.0.1", "ls")
    assert "unicloud: command not allowed" in p.stderr


def test_host_key_is_persistent_and_private(env, ssh_server_factory):
    first = ssh_server_factory()
    second = ssh_server_factory()
    assert first.host_key.get_fingerprint() == second.host_key.get_fingerprint()
    assert first.host_key.get_name() == "ssh-ed25519"
    assert env.settings.host_key_path.stat().st_mode & 0o777 == 0o600


def test_idle_connection_is_closed(env, ssh_server_factory):
    """A client that opens receive-pack and then sends nothing is cut off after the idle timeout."""
    server = ssh_server_factory(idle_timeout=1)
    cmd = ssh_command(env.alice_key, server.port).split() + ["git@127.0.0.1", f"git-receive-pack '{APP}.git'"]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.stdout.read().startswith(b"00"), "the ref advertisement came first"


def test_session_time_limit(env, ssh_server_factory):
    """Even a client that keeps the connection busy is disconnected after the overall limit."""
    server = ssh_server_factory(max_session=2)
    p = _ssh(env, server.port, "-N", "-o", "ServerAliveInterval=1", "git@127.0.0.1", timeout=30)
    assert p.returncode == 255

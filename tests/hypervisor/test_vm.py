"""Real microvms under QEMU: networking, boot config, privilege drop, stop/exit paths, adopt."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.hypervisor.conftest import wait_exited, wait_http
from tests.support import free_port
from unicloud.hypervisor.vm import VMError, VMManager

pytestmark = pytest.mark.slow


def test_serves_http_with_boot_config(manager, test_image):
    port = free_port()
    info = manager.start("web-1", test_image, env={"GREETING": "from-config", "LANG": "en_GB.UTF-8"},
                         cmd="httpd ${GREETING}", host_port=port)
    assert info.running and info.pid
    r = wait_http(port)
    assert r.status_code == 200
    assert r.text == "hello from-config"  # ${VAR} expanded from the boot config
    get = lambda path: httpx.get(f"http://127.0.0.1:{port}{path}", timeout=10)  # noqa: E731
    assert get("/env/PORT").text == "8080"
    assert get("/env/GREETING").text == "from-config"
    assert get("/env/HOME").text == "/app"
    assert get("/env/FROM_IMAGE").text == "image-default"  # image-env defaults reach the app
    assert get("/env/LANG").text == "en_GB.UTF-8"  # ...and the boot config overrides them
    assert get("/id").text == "uid=1000 gid=1000 groups=0"
    assert get("/write/tmp/scratch").text == "ok"
    assert get("/write/app/file").text == "error: Read-only file system"
    assert get("/write/etc/file").text.startswith("error:")
    assert get("/write/file-in-root").text.startswith("error:")


def test_graceful_stop_reaches_app(manager, test_image):
    port = free_port()
    manager.start("web-1", test_image, env={}, cmd="httpd", host_port=port)
    wait_http(port)
    info = manager.stop("web-1", grace=20)
    assert info.state == "exited"
    assert info.exit_code == 0  # httpd exits 0 on SIGTERM
    console = manager.console_path("web-1").read_text()
    assert "httpd: got SIGTERM" in console
    assert "unicloud-init: exit status 0" in console


def test_stop_forces_an_app_that_ignores_sigterm(manager, test_image):
    port = free_port()
    manager.start("web-1", test_image, env={"IGNORE_TERM": "1"}, cmd="httpd", host_port=port)
    wait_http(port)
    info = manager.stop("web-1", grace=2)
    assert info.state == "exited"
    assert (info.exit_code, info.signal) == (None, None)  # init never got to report
    assert "unicloud-init:" not in manager.console_path("web-1").read_text()


def test_exit_code_is_visible_to_host(manager, test_image):
    port = free_port()
    manager.start("web-1", test_image, env={}, cmd="httpd", host_port=port)
    wait_http(port)
    assert httpx.get(f"http://127.0.0.1:{port}/exit/7", timeout=10).text == "exiting with 7"
    info = wait_exited(manager, "web-1")
    assert (info.exit_code, info.signal) == (7, None)


def test_killed_app_reports_signal(manager, test_image):
    port = free_port()
    manager.start("web-1", test_image, env={}, cmd="httpd", host_port=port)
    wait_http(port)
    manager.signal("web-1", "KILL")
    info = wait_exited(manager, "web-1")
    assert (info.exit_code, info.signal) == (None, 9)
    assert "unicloud-init: killed by signal 9" in manager.console_path("web-1").read_text()


def test_shell_syntax_is_refused(manager, test_image):
    manager.start("web-1", test_image, env={}, cmd="httpd | tee /tmp/log", host_port=free_port())
    info = wait_exited(manager, "web-1")
    console = manager.console_path("web-1").read_text()
    assert "refusing command: shell syntax '|'" in console
    assert info.exit_code == 2


def test_missing_command_exits_127(manager, test_image):
    manager.start("web-1", test_image, env={}, cmd="no-such-binary --flag", host_port=free_port())
    info = wait_exited(manager, "web-1")
    assert info.exit_code == 127
    assert "command not found: no-such-binary" in manager.console_path("web-1").read_text()


def test_vm_cannot_reach_host_loopback(manager, test_image):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        host_port = listener.getsockname()[1]
        with socket.create_connection(("127.0.0.1", host_port), timeout=5):
            pass  # the port really is open to ordinary host processes
        port = free_port()
        manager.start("web-1", test_image, env={}, cmd="httpd", host_port=port)
        wait_http(port)
        answer = httpx.get(f"http://127.0.0.1:{port}/connect/10.0.2.2/{host_port}", timeout=20).text
    assert answer.startswith("error:"), answer


def test_adopt_after_agent_restart(manager, test_image, tmp_path):
    port = free_port()
    info = manager.start("web-1", test_image, env={}, cmd="httpd", host_port=port)
    wait_http(port)
    ppid = int(Path(f"/proc/{info.pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    assert ppid != os.getpid()  # QEMU is not our child: it survives the agent
    # A brand-new "agent" process finds it from the files in the VM directory.
    script = ("import json,sys; from pathlib import Path; from unicloud.hypervisor.vm import VMManager;"
              "print(json.dumps([[i.instance_id, i.pid, i.host_port] for i in "
              "VMManager(Path(sys.argv[1])).adopt()]))")
    out = subprocess.run([sys.executable, "-c", script, str(manager.vms_dir)], capture_output=True,
                         text=True, check=True).stdout
    assert json.loads(out) == [["web-1", info.pid, port]]
    assert wait_http(port).status_code == 200
    fresh = VMManager(manager.vms_dir)
    assert fresh.stop("web-1").exit_code == 0


def test_start_rejects_running_instance_and_bad_image(manager, test_image, tmp_path):
    port = free_port()
    manager.start("web-1", test_image, env={}, cmd="httpd", host_port=port)
    with pytest.raises(VMError, match="already running"):
        manager.start("web-1", test_image, env={}, cmd="httpd", host_port=free_port())
    with pytest.raises(VMError, match="has no kernel"):
        manager.start("web-2", tmp_path, env={}, cmd="httpd", host_port=free_port())
    with pytest.raises(VMError, match="QEMU failed to start"):
        manager.start("web-3", test_image, env={}, cmd="httpd", host_port=port)  # port taken

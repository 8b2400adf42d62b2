"""QEMU command line and accelerator choice."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from unicloud.hypervisor import accel as accel_mod
from unicloud.hypervisor.accel import Accel, _run_with_timeout
from unicloud.hypervisor.qemu import QemuSpec, build_argv, kernel_cmdline


def spec(tmp_path: Path, **kw) -> QemuSpec:
    base = dict(kernel=tmp_path / "kernel", initrd=tmp_path / "initrd", host_port=18000,
                console_log=tmp_path / "console.log", qmp_socket=tmp_path / "qmp.sock",
                control_socket=tmp_path / "control.sock", pidfile=tmp_path / "qemu.pid",
                accel=Accel("tcg", "test"))
    base.update(kw)
    return QemuSpec(**base)


def test_argv_for_microvm(tmp_path):
    argv = build_argv(spec(tmp_path))
    joined = " ".join(argv)
    assert argv[argv.index("-M") + 1] == "microvm,acpi=off"
    assert "-cpu max" in joined and "-no-reboot" in argv and "-nodefaults" in argv
    assert "hostfwd=tcp:127.0.0.1:18000-:8080" in joined
    assert "virtio-net-device,netdev=n0" in argv and "virtio-rng-device" in argv
    assert "restrict=on" not in joined and "-runas" not in argv
    assert "isa-serial,chardev=control,index=1" in argv  # the control UART (ttyS1)
    assert "-daemonize" in argv


def test_argv_isolation_options(tmp_path):
    argv = build_argv(spec(tmp_path, run_as="unicloud-vm", restrict_network=True, memory_mb=256))
    assert "restrict=on" in " ".join(argv)
    assert "unicloud-vm" in " ".join(argv)
    assert argv[argv.index("-m") + 1] == "256"


def test_argv_rejects_nonsense(tmp_path):
    with pytest.raises(ValueError, match="memory_mb"):
        build_argv(spec(tmp_path, memory_mb=1))
    with pytest.raises(ValueError, match="host_port"):
        build_argv(spec(tmp_path, host_port=70000))


def test_cmdline_configures_network_and_exit():
    line = kernel_cmdline()
    assert "console=ttyS0" in line and "ip=10.0.2.15::10.0.2.2:255.255.255.0::eth0:off" in line
    assert "panic=-1" in line and "reboot=t" in line


def test_accel_override(monkeypatch):
    monkeypatch.setenv("UNICLOUD_ACCEL", "tcg")
    assert accel_mod._decide(1.0, None) == Accel("tcg", "forced by UNICLOUD_ACCEL")
    monkeypatch.setenv("UNICLOUD_ACCEL", "xen")
    with pytest.raises(ValueError, match="UNICLOUD_ACCEL"):
        accel_mod._decide(1.0, None)


def test_probe_kills_what_does_not_finish():
    code, _ = _run_with_timeout([sys.executable, "-c", "import time; time.sleep(60)"], 0.5)
    assert code is None


def test_probe_in_a_fresh_process_decides():
    env = {k: v for k, v in os.environ.items() if k != "UNICLOUD_ACCEL"}
    out = subprocess.run([sys.executable, "-c", "from unicloud.hypervisor.accel import probe_accelerator as p;"
                          "a = p(timeout=3); print(a.name); assert p() is a"],
                         capture_output=True, text=True, env=env, check=True, timeout=60).stdout
    assert out.strip() in ("kvm", "tcg")

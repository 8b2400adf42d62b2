"""The nftables guard that keeps the VM user away from host services (needs root)."""

from __future__ import annotations

import os
import socket
import subprocess

import pytest

from unicloud.hypervisor.isolation import NFT_TABLE, VM_USER, ensure_isolation

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (useradd, nft)")


def test_rule_is_idempotent_and_blocks_only_the_vm_user():
    first = ensure_isolation()
    second = ensure_isolation()
    assert first == second and first.run_as == VM_USER and not first.restrict_network
    table = subprocess.run(["nft", "list", "table", "inet", NFT_TABLE], capture_output=True,
                           text=True, check=True).stdout
    assert table.count("reject with tcp reset") == 1
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        probe = f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=3)"
        as_vm = subprocess.run(["runuser", "-u", VM_USER, "--", "python3", "-c", probe],
                               capture_output=True, text=True, check=False)
        as_root = subprocess.run(["python3", "-c", probe], capture_output=True, text=True, check=False)
    assert as_root.returncode == 0
    assert as_vm.returncode != 0 and "ConnectionRefused" in as_vm.stderr

"""Keep guests away from the platform's own services.

QEMU's user-mode network maps the guest's gateway (10.0.2.2) to the host's loopback, so without
a guard any app could talk to Redis, the API or another app's port. QEMU therefore runs as a
dedicated unprivileged user (`unicloud-vm`), and an nftables rule in table `inet unicloud`
rejects new connections from that user to any local address (loopback and the host's own IPs).
Replies on host-forwarded connections (router -> VM) are established traffic and pass; guest
egress to the outside world is untouched; DNS to a local resolver stays allowed.

Without root or without `nft` the fallback is slirp `restrict=on`: no egress at all, logged.
"""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass

log = logging.getLogger(__name__)

VM_USER = "unicloud-vm"
NFT_TABLE = "unicloud"


class IsolationError(RuntimeError):
    """The VM user or the firewall rule could not be set up."""


@dataclass(frozen=True)
class Isolation:
    run_as: str | None  # user QEMU drops to, None = stay as the caller
    restrict_network: bool  # slirp restrict=on (no egress)
    reason: str


def ensure_vm_user(name: str = VM_USER) -> int:
    """Create the system user QEMU runs as, if missing; return its uid."""
    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        pass
    proc = subprocess.run(["useradd", "--system", "--user-group", "--no-create-home",
                           "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", name],
                          capture_output=True, text=True, check=False)
    if proc.returncode not in (0, 9):  # 9: created concurrently
        raise IsolationError(f"useradd {name} failed: {proc.stderr.strip()}")
    return pwd.getpwnam(name).pw_uid


def nft_ruleset(uid: int) -> str:
    """Recreated atomically on every call, so applying it twice leaves one copy."""
    return f"""table inet {NFT_TABLE}
delete table inet {NFT_TABLE}
table inet {NFT_TABLE} {{
    chain vm_egress {{
        type filter hook output priority filter; policy accept;
        meta skuid {uid} ct state new fib daddr type local meta l4proto {{ tcp, udp }} th dport 53 accept
        meta skuid {uid} ct state new fib daddr type local meta l4proto tcp reject with tcp reset
        meta skuid {uid} ct state new fib daddr type local reject
    }}
}}
"""


def install_egress_rule(uid: int) -> None:
    nft = shutil.which("nft")
    if not nft:
        raise IsolationError("nft not found (apt-get install nftables)")
    proc = subprocess.run([nft, "-f", "-"], input=nft_ruleset(uid), capture_output=True,
                          text=True, check=False)
    if proc.returncode != 0:
        raise IsolationError(f"nft rejected the ruleset: {proc.stderr.strip()}")
    check = subprocess.run([nft, "list", "table", "inet", NFT_TABLE], capture_output=True,
                           text=True, check=False)
    if f"skuid {uid}" not in check.stdout and f"skuid {VM_USER}" not in check.stdout:
        raise IsolationError(f"nft table inet {NFT_TABLE} does not hold the rule after loading it")


def ensure_isolation() -> Isolation:
    """Set up (idempotently) the VM user and firewall rule, or pick the fallback."""
    if os.geteuid() != 0:
        reason = "not running as root: cannot run QEMU as a separate user or install nftables rules"
    else:
        try:
            uid = ensure_vm_user()
            install_egress_rule(uid)
            return Isolation(VM_USER, False, f"QEMU runs as {VM_USER} (uid {uid}); nft table inet "
                                             f"{NFT_TABLE} rejects its connections to local addresses")
        except (IsolationError, OSError) as exc:
            reason = str(exc)
    log.warning("VM network isolation fallback (slirp restrict=on, guests get no egress): %s", reason)
    return Isolation(None, True, reason)

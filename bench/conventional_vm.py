"""The conventional-VM baseline: a stock Debian bookworm minbase root with systemd, the distro's
cloud kernel and initrd, and the same hello app as a systemd service, packed as a disk image.

This is what a "normal" VM image of the app looks like, so unicloud's image size, boot time and
memory are compared with it rather than with an abstract number. The root is built once per
machine with debootstrap (minutes) and cached under `<cache_dir>/bench/conventional/`.
"""

from __future__ import annotations

import shutil
import subprocess
import textwrap
from dataclasses import dataclass
from pathlib import Path

MIRROR = "http://deb.debian.org/debian"
SUITE = "bookworm"
PACKAGES = [
    "systemd", "systemd-sysv", "udev", "python3", "linux-image-cloud-amd64", "initramfs-tools",
    "iproute2",
]
APP_DIR_IN_GUEST = "/srv/app"
GUEST_PORT = 8080


@dataclass(frozen=True)
class ConventionalImage:
    disk: Path  # qcow2 holding the whole root filesystem
    kernel: Path
    initrd: Path

    @property
    def disk_bytes(self) -> int:
        return self.disk.stat().st_size

    @property
    def boot_bytes(self) -> int:
        return self.kernel.stat().st_size + self.initrd.stat().st_size


def _nice() -> list[str]:
    return ["nice", "-n", "19", "ionice", "-c", "3"]


def build_root(cache: Path, log=print) -> Path:
    """debootstrap the root once; the `.done` marker makes a half-finished run start over."""
    root = cache / "root"
    done = cache / "root.done"
    if done.exists():
        return root
    if root.exists():
        shutil.rmtree(root)
    cache.mkdir(parents=True, exist_ok=True)
    log(f"conventional VM: debootstrap {SUITE} minbase into {root} (takes minutes, once)")
    with open(cache / "debootstrap.log", "wb") as out:
        subprocess.run(
            [*_nice(), "debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}",
             SUITE, str(root), MIRROR],
            check=True, stdout=out, stderr=subprocess.STDOUT)
    _configure_root(root)
    done.touch()
    return root


def _configure_root(root: Path) -> None:
    """Network by systemd-networkd (DHCP from QEMU's slirp), serial console, no apt caches."""
    (root / "etc/hostname").write_text("conventional\n")
    (root / "etc/fstab").write_text("/dev/vda / ext4 rw,relatime 0 1\n")
    net = root / "etc/systemd/network/20-wired.network"
    net.parent.mkdir(parents=True, exist_ok=True)
    net.write_text("[Match]\nName=en* eth*\n\n[Network]\nDHCP=ipv4\n")
    wants = root / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    link = wants / "systemd-networkd.service"
    if not link.exists():
        link.symlink_to("/lib/systemd/system/systemd-networkd.service")
    for sub in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for p in (root / sub).glob("*"):
            if p.is_file():
                p.unlink()


def install_app(root: Path, app_source: Path, command: list[str]) -> None:
    """Copy the app and enable it as a systemd service listening on GUEST_PORT."""
    dest = root / APP_DIR_IN_GUEST.lstrip("/")
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(app_source, dest, ignore=shutil.ignore_patterns(".git", "__pycache__", ".venv"))
    unit = root / "etc/systemd/system/hello.service"
    unit.write_text(textwrap.dedent(f"""\
        [Unit]
        Description=hello WSGI app
        After=network.target

        [Service]
        WorkingDirectory={APP_DIR_IN_GUEST}
        Environment=PORT={GUEST_PORT} PYTHONUNBUFFERED=1
        ExecStart={' '.join(command)}
        Restart=always

        [Install]
        WantedBy=multi-user.target
        """))
    link = root / "etc/systemd/system/multi-user.target.wants/hello.service"
    if not link.is_symlink():
        link.symlink_to("/etc/systemd/system/hello.service")


def pack(root: Path, cache: Path, app_source: Path, command: list[str], log=print) -> ConventionalImage:
    """An ext4 filesystem filled from the root (mke2fs -d, no loop mounts), stored as qcow2."""
    install_app(root, app_source, command)
    boot = root / "boot"
    kernels = sorted(boot.glob("vmlinuz-*"))
    initrds = sorted(boot.glob("initrd.img-*"))
    if not kernels or not initrds:
        raise RuntimeError(f"no kernel/initrd under {boot}: is linux-image-cloud-amd64 installed?")
    out = cache / "image"
    out.mkdir(parents=True, exist_ok=True)
    kernel, initrd = out / "vmlinuz", out / "initrd.img"
    shutil.copyfile(kernels[-1], kernel)
    shutil.copyfile(initrds[-1], initrd)
    used = int(subprocess.run(["du", "-sxb", str(root)], capture_output=True, text=True,
                              check=True).stdout.split()[0])
    size_mb = int(used * 1.3 / 2**20) + 64
    raw = out / "root.ext4"
    raw.unlink(missing_ok=True)
    log(f"conventional VM: mke2fs -d ({size_mb} MiB filesystem)")
    subprocess.run([*_nice(), "mke2fs", "-q", "-t", "ext4", "-d", str(root), "-L", "root",
                    str(raw), f"{size_mb}M"], check=True)
    disk = out / "root.qcow2"
    subprocess.run([*_nice(), "qemu-img", "convert", "-O", "qcow2", str(raw), str(disk)], check=True)
    raw.unlink()
    return ConventionalImage(disk=disk, kernel=kernel, initrd=initrd)


def qemu_argv(image: ConventionalImage, host_port: int, console_log: Path, memory_mb: int,
              accel_args: list[str]) -> list[str]:
    """Same QEMU as unicloud, the conventional way: q35, virtio-blk root, virtio-net, slirp."""
    return [
        "qemu-system-x86_64", "-M", "q35", *accel_args, "-smp", "1", "-m", str(memory_mb),
        "-nodefaults", "-no-user-config", "-display", "none",
        "-kernel", str(image.kernel), "-initrd", str(image.initrd),
        "-append", "root=/dev/vda rw console=ttyS0 quiet",
        "-drive", f"file={image.disk},if=virtio,format=qcow2,snapshot=on",
        "-device", "virtio-rng-pci",
        "-netdev", f"user,id=n0,hostfwd=tcp:127.0.0.1:{host_port}-:{GUEST_PORT}",
        "-device", "virtio-net-pci,netdev=n0",
        "-chardev", f"file,id=console,path={console_log}", "-serial", "chardev:console",
    ]

"""Image size, boot to first HTTP 200 and idle host RSS of the python-hello app:
the unicloud image vs a conventional Debian VM image, and vs the app run natively.

Every VM on either side is booted by the same QEMU with the same accelerator; boot time is
measured from exec of QEMU (or of python, for the native baseline) to the first HTTP 200
through a loopback port forward.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
import traceback
from pathlib import Path

from bench import conventional_vm as conv
from bench import unicloud_image
from bench.core import Result, failed, not_built
from bench.measure import Proc, free_port, mb, rss_mb, wait_for_200

APP = "python-hello"
APP_DIR = unicloud_image.APPS / APP
NATIVE_PYTHON = "/usr/bin/python3"  # Debian's 3.11: the interpreter both images carry
BOOT_TIMEOUT = 300.0
IDLE_SETTLE = 5.0  # seconds after the first 200 before RSS is read
# Debian's stock initrd does not unpack in 128 MB (kernel panic "System is deadlocked on memory",
# seen on this machine), so the conventional VM gets 256 MB; unicloud uses the product default.
CONV_MEMORY_MB = 256

BASE_CONV = "conventional Debian VM (systemd, cloud kernel)"
BASE_NATIVE = "native process (host python3, no VM)"


def log(msg: str) -> None:
    print(f"   [vm] {msg}", flush=True)


def run(quick: bool) -> list[Result]:
    rounds = 1 if quick else 3
    native = _native_boots(1 if quick else 5)
    conv_img, conv_err = _conventional_image()
    conv_boot, conv_rss, conv_boot_err = ([], [], conv_err)
    if conv_img:
        conv_boot, conv_rss, conv_boot_err = _boots(
            rounds, lambda port, wd: Proc(conv.qemu_argv(conv_img, port, wd / "console.log",
                                                         CONV_MEMORY_MB, _accel_args()),
                                          log=wd / "qemu.out"), "conventional")
    uni_img, uni_err = _unicloud_image()
    uni_boot, uni_rss, uni_boot_err = ([], [], uni_err)
    if uni_img:
        uni_boot, uni_rss, uni_boot_err = _boots(
            rounds, lambda port, wd: unicloud_image.boot(uni_img, port, wd), "unicloud")
    return _results(native, conv_img, conv_boot, conv_rss, conv_boot_err,
                    uni_img, uni_boot, uni_rss, uni_boot_err)


def _accel_args() -> list[str]:
    from bench.machine import accel_args

    return accel_args()


def _native_boots(rounds: int) -> list[float]:
    out = []
    for _ in range(rounds):
        port = free_port()
        env = dict(os.environ, PORT=str(port), PYTHONUNBUFFERED="1")
        t0 = time.monotonic()
        with Proc([NATIVE_PYTHON, "app.py"], env=env, cwd=APP_DIR) as p:
            out.append(wait_for_200(port, t0, timeout=30, proc=p.popen, interval=0.002))
    log(f"native boots: {[round(x, 3) for x in out]}")
    return out


def _app_key() -> str:
    h = hashlib.sha256()
    for f in sorted(APP_DIR.rglob("*")):
        if f.is_file():
            h.update(str(f.relative_to(APP_DIR)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:12]


def _conventional_image():
    cache = unicloud_image.bench_cache() / "conventional"
    try:
        root = conv.build_root(cache, log=log)
        marker = cache / f"image.{_app_key()}.done"
        image = conv.ConventionalImage(cache / "image" / "root.qcow2", cache / "image" / "vmlinuz",
                                       cache / "image" / "initrd.img")
        if not marker.exists():
            for old in cache.glob("image.*.done"):
                old.unlink()
            image = conv.pack(root, cache, APP_DIR, [NATIVE_PYTHON, "app.py"], log=log)
            marker.touch()
        return image, None
    except Exception as e:
        traceback.print_exc()
        return None, e


def _unicloud_image():
    try:
        img = unicloud_image.build_once(APP)
        log(f"unicloud image {img.dir.name[:12]}: build {img.build_seconds:.1f} s, "
            f"image {img.image_seconds:.1f} s")
        return img, None
    except ImportError as e:
        return None, e
    except Exception as e:
        traceback.print_exc()
        return None, e


def _boots(rounds: int, start, label: str):
    """`rounds` boots: seconds to first 200, and RSS of QEMU after IDLE_SETTLE seconds idle."""
    boots, rss = [], []
    for i in range(rounds):
        port = free_port()
        wd = Path(tempfile.mkdtemp(prefix=f"bench-{label}-", dir="/tmp"))
        try:
            with start(port, wd) as p:
                try:
                    boots.append(wait_for_200(port, p.started, timeout=BOOT_TIMEOUT, proc=p.popen))
                except (TimeoutError, RuntimeError) as e:
                    tail = _tail(wd / "console.log")
                    return boots, rss, RuntimeError(f"{label} boot {i + 1}: {e}; console: {tail}")
                time.sleep(IDLE_SETTLE)
                rss.append(rss_mb(p.pid))
            log(f"{label} boot {i + 1}: {boots[-1]:.2f} s, idle RSS {rss[-1]:.0f} MB")
        finally:
            shutil.rmtree(wd, ignore_errors=True)
    return boots, rss, None


def _tail(path: Path, n: int = 300) -> str:
    try:
        return path.read_bytes()[-n:].decode(errors="replace").replace("\n", " ⏎ ")
    except OSError:
        return "(no console log)"


def _why_not(err) -> str:
    if isinstance(err, ImportError):
        return f"image builder not available yet ({err})"
    return f"{type(err).__name__}: {err}"


def _results(native, conv_img, conv_boot, conv_rss, conv_err, uni_img, uni_boot, uni_rss,
             uni_err) -> list[Result]:
    out: list[Result] = []
    conv_sizes = {}
    if conv_img:
        conv_sizes = {"total": conv_img.disk_bytes / 1e6 + conv_img.boot_bytes / 1e6,
                      "kernel": mb(conv_img.kernel), "rootfs": conv_img.disk_bytes / 1e6}
    conv_note = (f"conventional: qcow2 root {conv_sizes.get('rootfs', 0):.0f} MB + vmlinuz "
                 f"{mb(conv_img.kernel):.1f} MB + initrd {mb(conv_img.initrd):.1f} MB"
                 if conv_img else "")
    size_rows = [("image size, total", "total", "unicloud: kernel + rootfs.cpio.xz; " + conv_note),
                 ("image size, kernel", "kernel", "conventional: Debian linux-image-cloud-amd64 vmlinuz"),
                 ("image size, root filesystem", "rootfs",
                  "unicloud: rootfs.cpio.xz; conventional: ext4 root as qcow2 (used blocks)")]
    for metric, key, note in size_rows:
        base = [conv_sizes[key]] if key in conv_sizes else []
        if uni_img:
            uni = {"total": mb(uni_img.kernel) + mb(uni_img.rootfs), "kernel": mb(uni_img.kernel),
                   "rootfs": mb(uni_img.rootfs)}[key]
            if base:
                out.append(Result(metric, "MB", [uni], BASE_CONV, base, note, chart="size"))
            else:
                out.append(failed(metric, "MB", f"conventional image: {_why_not(conv_err)}",
                                  baseline_name=BASE_CONV, unicloud=[uni]))
        else:
            out.append(not_built(metric, "MB", _why_not(uni_err), baseline_name=BASE_CONV,
                                 baseline=base, chart="size"))
    accel = _accel_label()
    boot_note = f"QEMU exec → first HTTP 200 via hostfwd, {accel}"
    mem = unicloud_image.memory_mb_default() if uni_img else None
    for name, base, note in ((BASE_CONV, conv_boot, boot_note + f"; unicloud -m {mem}, conventional -m {CONV_MEMORY_MB} (its stock initrd panics in 128)"),
                             (BASE_NATIVE, native, "native: exec → first 200, same app.py")):
        metric = "boot to first HTTP 200"
        if uni_err or not uni_boot:
            out.append(not_built(metric, "s", _why_not(uni_err) if uni_err else "no boot measured",
                                 baseline_name=name, baseline=base, chart="boot")
                       if not uni_img else
                       failed(metric, "s", uni_err or "no boot", baseline_name=name, baseline=base))
        elif name == BASE_CONV and conv_err:
            out.append(failed(metric, "s", f"conventional VM: {_why_not(conv_err)}",
                              baseline_name=name, baseline=base, unicloud=uni_boot))
        else:
            out.append(Result(metric, "s", uni_boot, name, base, note, chart="boot"))
    metric = "host RSS of one idle VM (QEMU process)"
    note = (f"VmRSS {IDLE_SETTLE:.0f} s after first 200; unicloud -m {mem}, conventional "
            f"-m {CONV_MEMORY_MB}")
    if not uni_img:
        out.append(not_built(metric, "MB", _why_not(uni_err), baseline_name=BASE_CONV,
                             baseline=conv_rss))
    elif uni_err or conv_err:
        out.append(failed(metric, "MB", f"{_why_not(uni_err or conv_err)}",
                          baseline_name=BASE_CONV, baseline=conv_rss, unicloud=uni_rss))
    else:
        out.append(Result(metric, "MB", uni_rss, BASE_CONV, conv_rss, note))
    return out


def _accel_label() -> str:
    try:
        from unicloud.hypervisor.accel import probe_accelerator

        return probe_accelerator().name.upper()
    except Exception:
        return "accelerator unknown"

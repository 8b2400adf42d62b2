"""Every sample app, as it stands in `tests/apps`, becomes an audited image that boots under
QEMU and serves its page with a config var that was set at boot, not at build time."""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

import pytest

from tests.support import free_port
from unicloud.build.pipeline import run_build
from unicloud.image.builder import build_image
from unicloud.image.memory import instance_memory_mb
from unicloud.image.store import ImageStore

pytestmark = pytest.mark.slow

APPS = Path(__file__).resolve().parents[1] / "apps"
SAMPLES = {
    "python-hello": "Bonjour from python-hello!",
    "flask": "Bonjour from flask!",
    "fastapi": "Bonjour from fastapi!",
    "django": "Bonjour from django!",
    "cext": "Bonjour",
    "go-hello": "Bonjour",
}


@pytest.mark.parametrize("sample", sorted(SAMPLES))
def test_sample_app_boots_as_an_audited_image(sample, tmp_path):
    from unicloud.hypervisor.vm import VMManager

    log: list[str] = []
    out = run_build(APPS / sample, app=sample, cache_dir=tmp_path / "cache", env={}, log=log.append,
                    work_dir=tmp_path / "work")
    try:
        record = build_image(out.root, out.manifest, store=ImageStore(tmp_path / "images"), log=log.append)
    finally:
        out.close()
    manifest = record.manifest
    assert manifest["audit"]["passed"], manifest["audit"]

    manager = VMManager(tmp_path / "vms")
    port = free_port()
    memory = instance_memory_mb(128, manifest)  # what the scheduler would give it
    manager.start(f"sample-{sample}", record.path, env={"PORT": "8080", "DYNO": "web.1", "GREETING": "Bonjour"},
                  cmd=manifest["process_types"]["web"], memory_mb=memory, host_port=port)
    try:
        deadline, body, last = time.monotonic() + 180, "", None
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as resp:
                    if resp.status == 200:
                        body = resp.read().decode()
                        break
            except OSError as exc:
                last = exc
            if not manager.status(f"sample-{sample}").running:
                break
            time.sleep(0.5)
        console = manager.console_path(f"sample-{sample}").read_text(errors="replace")
        assert SAMPLES[sample] in body, f"{sample} ({memory} MB): {last}\n{console[-4000:]}"
    finally:
        manager.stop(f"sample-{sample}", grace=5)
        manager.remove(f"sample-{sample}")

"""The kernel builder's option checker, and (slow) the cached kernel itself."""

from __future__ import annotations

import pytest

from unicloud.image.kernel.build import (
    KernelBuildError, KernelConfigError, fragment_path, missing_options, parse_config)


def test_parse_config_reads_set_and_unset_and_later_wins():
    cfg = parse_config("CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=\"x\"\n# comment\n\nCONFIG_A=n\n")
    assert cfg == {"CONFIG_A": "n", "CONFIG_B": None, "CONFIG_C": '"x"'}


def test_parse_config_rejects_garbage():
    with pytest.raises(KernelBuildError, match="cannot parse"):
        parse_config("CONFIG_A y\n")


def test_dropped_options_are_reported():
    requested = parse_config("CONFIG_VIRTIO_NET=y\nCONFIG_IPV6=y\n# CONFIG_MODULES is not set\nCONFIG_HZ=100\n")
    actual = parse_config("# CONFIG_VIRTIO_NET is not set\nCONFIG_IPV6=y\nCONFIG_MODULES=y\nCONFIG_HZ=250\n")
    assert missing_options(requested, actual) == [
        "CONFIG_VIRTIO_NET: wanted y, got unset",
        "CONFIG_MODULES: wanted unset, got y",
        "CONFIG_HZ: wanted 100, got 250",
    ]
    assert missing_options(requested, parse_config("CONFIG_VIRTIO_NET=y\nCONFIG_IPV6=y\nCONFIG_HZ=100\n")) == []
    err = KernelConfigError("microvm", missing_options(requested, actual))
    assert "CONFIG_VIRTIO_NET" in str(err) and err.dropped


def test_unknown_flavour_lists_known_ones():
    with pytest.raises(KernelBuildError, match="known flavours: .*microvm"):
        fragment_path("nope")
    with pytest.raises(KernelBuildError):
        fragment_path("../microvm")


@pytest.mark.slow
def test_cached_kernel_has_every_requested_option(kernel):
    config = (kernel.parent / "config").read_text()
    requested = parse_config(fragment_path("microvm").read_text())
    assert missing_options(requested, parse_config(config)) == []
    assert "CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES=y" in config
    assert kernel.stat().st_size < 3_000_000


@pytest.mark.slow
def test_real_olddefconfig_drop_fails_the_build(tmp_path, monkeypatch):
    """End to end up to `olddefconfig`: VIRTIO_NET without NET cannot survive, so the build stops
    with the dropped option named, before compiling anything."""
    from unicloud.image.kernel import build

    fragments = tmp_path / "fragments"
    fragments.mkdir()
    (fragments / "broken.config").write_text("CONFIG_VIRTIO_MENU=y\nCONFIG_VIRTIO_NET=y\n# CONFIG_NET is not set\n")
    monkeypatch.setattr(build, "FRAGMENT_DIR", fragments)
    monkeypatch.setenv("UNICLOUD_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(KernelConfigError) as exc:
        build.ensure_kernel("broken", progress=False)
    assert any(d.startswith("CONFIG_VIRTIO_NET:") for d in exc.value.dropped)
    assert not list((tmp_path / "cache" / "kernels").glob("*/bzImage"))
    assert not list((tmp_path / "cache" / "kernels").glob("*.build"))  # work tree cleaned up

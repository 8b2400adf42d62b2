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

"""The memory floor that lets an image unpack its initramfs and start."""

from unicloud.image.memory import instance_memory_mb, minimum_memory_mb

MB = 1024 * 1024


def test_small_images_keep_the_default():
    hello = {"rootfs": {"size": 5 * MB, "uncompressed_size": 16 * MB}}
    assert minimum_memory_mb(hello) == 128  # 2 x 16 + 80 = 112
    assert instance_memory_mb(128, hello) == 128


def test_large_rootfs_raises_memory_in_64mb_steps():
    flask = {"rootfs": {"size": 8 * MB, "uncompressed_size": 30 * MB}}
    assert minimum_memory_mb(flask) == 192  # 2 x 30 + 80 = 140
    django = {"rootfs": {"size": 14 * MB, "uncompressed_size": 63 * MB}}
    assert minimum_memory_mb(django) == 256  # 2 x 63 + 80 = 206
    assert instance_memory_mb(128, django) == 256
    assert instance_memory_mb(512, django) == 512  # an explicit larger setting wins


def test_unknown_sizes_change_nothing():
    assert minimum_memory_mb({}) == 0 and minimum_memory_mb(None) == 0
    assert instance_memory_mb(128, {"rootfs": {}}) == 128

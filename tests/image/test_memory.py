"""The memory floor that lets an image unpack its initramfs and start."""

from unicloud.image.memory import instance_memory_mb, minimum_memory_mb

MB = 1024 * 1024


def test_small_images_keep_the_default():
    hello = {"rootfs": {"size": 5 * MB, "uncompressed_size": 16 * MB}}
    assert minimum_memory_mb(hello) == 128
    assert instance_memory_mb(128, hello) == 128


def test_large_rootfs_raises_memory_in_64mb_steps():
    django = {"rootfs": {"size": 15 * MB, "uncompressed_size": 63 * MB}}
    assert minimum_memory_mb(django) == 192  # 63 + 15 + 80 headroom = 158 -> 192
    assert instance_memory_mb(128, django) == 192
    assert instance_memory_mb(512, django) == 512  # an explicit larger setting wins


def test_unknown_sizes_change_nothing():
    assert minimum_memory_mb({}) == 0 and minimum_memory_mb(None) == 0
    assert instance_memory_mb(128, {"rootfs": {}}) == 128


def test_the_xz_dictionary_counts_while_a_layer_unpacks():
    # 20 MB unpacked + 2 MB packed + 16 MiB dictionary + 80 headroom = 118 -> 128
    small = {"rootfs": {"size": 2 * MB, "uncompressed_size": 20 * MB,
                        "layers": [{"uncompressed_size": 19 * MB}, {"uncompressed_size": MB}]}}
    assert minimum_memory_mb(small) == 128
    # 30 + 3 + 80 = 113 would fit 128, but the 16 MiB dictionary of its 30 MB layer does not
    tight = {"rootfs": {"size": 3 * MB, "uncompressed_size": 30 * MB,
                        "layers": [{"uncompressed_size": 29 * MB}, {"uncompressed_size": MB}]}}
    assert minimum_memory_mb(tight) == 192

"""The guest kernel: config fragments per flavour and a cached builder (`ensure_kernel`)."""

from unicloud.image.kernel.build import KernelBuildError, KernelConfigError, ensure_kernel

__all__ = ["KernelBuildError", "KernelConfigError", "ensure_kernel"]

"""The image's PID 1: a static C program (`init.c`) and its cached build (`ensure_init`)."""

from unicloud.image.init.build import InitBuildError, ensure_init

__all__ = ["InitBuildError", "ensure_init"]

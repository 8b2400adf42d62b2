"""unicloud: git push to immutable, unikernel-style VM images."""

__version__ = "0.1.0"

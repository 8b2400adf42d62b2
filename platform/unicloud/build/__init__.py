"""Build worker: buildpacks in sandboxed Debian stacks (see docs/buildpacks.md)."""

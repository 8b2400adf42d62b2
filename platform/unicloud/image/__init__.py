"""Image builder: runtime closure -> shell-less rootfs -> audit, SBOM -> content-addressed store."""

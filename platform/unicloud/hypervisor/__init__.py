"""Hypervisor side: QEMU microvm lifecycle on one host (accelerator probe, boot config, VMs)."""

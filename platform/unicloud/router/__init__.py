"""The router: nginx in front of every app's healthy instances, driven by the scheduler's routing table."""

"""The REST API (`/api`), the web console (`/`) and smart-HTTP git (`/git`) in one ASGI app."""

from unicloud.api.app import create_app

__all__ = ["create_app"]

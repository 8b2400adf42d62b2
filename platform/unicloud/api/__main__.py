"""`python -m unicloud.api`: the Procfile's `api` process."""

from __future__ import annotations

import uvicorn

from unicloud.api.app import create_app
from unicloud.config import Settings


def main() -> None:
    settings = Settings.from_env()
    uvicorn.run(create_app(settings), host=settings.bind, port=settings.api_port,
                log_level="info", proxy_headers=False, timeout_graceful_shutdown=5)


if __name__ == "__main__":
    main()

"""The FastAPI application factory: API routes, the console and the git smart-HTTP mount."""

from __future__ import annotations

import logging

from fastapi import FastAPI

from unicloud.api import errors
from unicloud.api.routes import apps, logs, releases, runtime
from unicloud.config import Settings

log = logging.getLogger("unicloud.api")


def _mount_git(app: FastAPI, settings: Settings) -> None:
    """Smart HTTP git through a2wsgi, which streams request bodies (Starlette's bridge buffers a
    whole push in memory)."""
    from a2wsgi import WSGIMiddleware

    from unicloud.git.http import create_git_wsgi_app

    app.mount("/git", WSGIMiddleware(create_git_wsgi_app(settings), workers=16))


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings.from_env()
    app = FastAPI(title="unicloud", version="0.1.0", description="Self-hosted, Heroku-style PaaS",
                  openapi_url="/api/openapi.json", docs_url="/api/docs", redoc_url=None)
    app.state.settings = settings
    errors.install(app)
    for module in (apps, releases, runtime, logs):
        app.include_router(module.router)
    from unicloud.console.routes import mount_console

    mount_console(app)
    _mount_git(app, settings)
    return app

"""Entry point of the `unicloud` console script: importing the command modules registers them."""

from unicloud.cli import cmd_account, cmd_apps, cmd_builds, cmd_logs, cmd_release  # noqa: F401
from unicloud.cli.base import app

__all__ = ["app"]

if __name__ == "__main__":
    app()

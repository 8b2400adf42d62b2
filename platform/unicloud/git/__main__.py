"""`python -m unicloud.git`: the Procfile `git` process (SSH on settings.bind:settings.ssh_port)."""

from __future__ import annotations

import logging
import signal
import sys

from unicloud.config import Settings
from unicloud.git.ssh import GitSSHServer


def main() -> int:
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(asctime)s git %(levelname)s %(name)s: %(message)s")
    # paramiko logs a full traceback for every scanner or broken client; our one-line
    # "connection ended: <reason>" per connection says enough.
    logging.getLogger("paramiko").setLevel(logging.CRITICAL)
    server = GitSSHServer(Settings.from_env())
    server.bind()
    signal.signal(signal.SIGTERM, lambda *_: server.stop())
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

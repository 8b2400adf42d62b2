"""`python -m unicloud.hypervisor.boot IMAGE_DIR --port N [--env K=V] [--cmd CMD]`

Boot one image in the foreground for manual debugging: the console streams to stdout, Ctrl-C
stops the VM gracefully (SIGTERM to the app via init), and the exit code is the app's.
Without --cmd the image's manifest.json "web" process type is used.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import tempfile
import time
from pathlib import Path

from unicloud.hypervisor.vm import VMError, VMManager


def _parse_env(pairs: list[str]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--env expects KEY=VALUE, got {pair!r}")
        env[key] = value
    return env


def _default_cmd(image_dir: Path) -> str:
    manifest = image_dir / "manifest.json"
    try:
        types = json.loads(manifest.read_text()).get("process_types") or {}
    except (OSError, ValueError):
        types = {}
    if "web" not in types:
        raise SystemExit(f"no --cmd given and {manifest} has no 'web' process type")
    return types["web"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m unicloud.hypervisor.boot", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("image_dir", type=Path)
    parser.add_argument("--port", type=int, required=True, help="host port forwarded to the guest's 8080")
    parser.add_argument("--env", action="append", default=[], metavar="K=V")
    parser.add_argument("--cmd")
    parser.add_argument("--memory", type=int, default=128, metavar="MB")
    parser.add_argument("--verbose", action="store_true", help="full kernel log on the console")
    parser.add_argument("--grace", type=float, default=10)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s", stream=sys.stderr)

    cmd = args.cmd or _default_cmd(args.image_dir)
    # QEMU is daemonized; a SIGTERM to this command must stop the VM like Ctrl-C does.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with tempfile.TemporaryDirectory(prefix="unicloud-boot-") as tmp:
        manager = VMManager(Path(tmp))
        try:
            info = manager.start("debug", args.image_dir, env=_parse_env(args.env), cmd=cmd,
                                 memory_mb=args.memory, host_port=args.port, quiet=not args.verbose)
        except VMError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(f"# VM up (pid {info.pid}, {info.accel}): http://127.0.0.1:{args.port}/  Ctrl-C stops it",
              file=sys.stderr)
        offset = 0
        try:
            while True:
                offset = _pump(info.console_path, offset)
                if not manager.status("debug").running:
                    break
                time.sleep(0.1)
        except KeyboardInterrupt:
            print("# stopping (SIGTERM to the app)", file=sys.stderr)
            manager.stop("debug", grace=args.grace)
        _pump(info.console_path, offset)
        final = manager.status("debug")
    if final.exit_code is not None:
        return final.exit_code
    return 128 + final.signal if final.signal else 1


def _pump(path: Path, offset: int) -> int:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return offset
    if data:
        sys.stdout.buffer.write(data.replace(b"\r\n", b"\n"))
        sys.stdout.flush()
    return offset + len(data)


if __name__ == "__main__":
    sys.exit(main())

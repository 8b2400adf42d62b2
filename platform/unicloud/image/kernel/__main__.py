"""`python -m unicloud.image.kernel [--flavour F]`: build (if needed) and print the bzImage path."""

import argparse
import logging
import sys

from unicloud.image.kernel.build import KernelBuildError, ensure_kernel


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m unicloud.image.kernel", description=__doc__)
    parser.add_argument("--flavour", default="microvm")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        print(ensure_kernel(args.flavour, progress=not args.no_progress))
    except KernelBuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`python -m unicloud.image.build ROOT --manifest PATH --out DIR`: build one image by hand.

The image lands in the content-addressed store (`--store`, default Settings.images_dir) and is
then exported to DIR; the digest is printed on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from unicloud.image.builder import ImageBuildError, build_image
from unicloud.image.inspect import export_image
from unicloud.image.store import ImageStore


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m unicloud.image.build", description=__doc__)
    ap.add_argument("root", type=Path, help="build root (the app at /app)")
    ap.add_argument("--manifest", type=Path,
                    help="runtime manifest (default ROOT/app/.unicloud/runtime.json)")
    ap.add_argument("--out", type=Path, help="export the image files to this directory")
    ap.add_argument("--store", type=Path, help="image store directory")
    ap.add_argument("--flavour", default="microvm")
    ap.add_argument("--source-date-epoch", type=int, default=0)
    ap.add_argument("--kernel", type=Path, help="use this bzImage instead of the cached build")
    args = ap.parse_args(argv)

    manifest_path = args.manifest or args.root / "app/.unicloud/runtime.json"
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError) as exc:
        print(f"error: cannot read manifest {manifest_path}: {exc}", file=sys.stderr)
        return 2
    try:
        rec = build_image(args.root, manifest, store=ImageStore(args.store),
                          source_date_epoch=args.source_date_epoch, flavour=args.flavour,
                          kernel=args.kernel, log=lambda m: print(m, file=sys.stderr))
    except ImageBuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.out:
        export_image(rec.path, args.out)
    print(rec.digest)
    return 0


if __name__ == "__main__":
    sys.exit(main())

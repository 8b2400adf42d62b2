"""Print the [project].dependencies of /app/pyproject.toml, one per line (for pip -r).

An app's pyproject is usually not an installable package (flat layout, no build-system), so
only its dependencies are installed; the app itself runs from /app.
"""

import sys
import tomllib
from pathlib import Path

try:
    data = tomllib.loads(Path(sys.argv[1]).read_text())
except tomllib.TOMLDecodeError as e:
    print(f"pyproject.toml is not valid TOML: {e}", file=sys.stderr)
    sys.exit(1)
for dep in data.get("project", {}).get("dependencies", []):
    print(dep)

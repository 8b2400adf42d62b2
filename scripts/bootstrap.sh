#!/usr/bin/env bash
# Install whatever is missing for unicloud on Debian 12: Debian packages (as root), then the
# virtualenv .venv with pinned dependencies. Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\033[1m==> %s\033[0m\n' "$*"; }

# --- Debian packages -------------------------------------------------------------------------
mapfile -t wanted < <(grep -v '^\s*#' deps/debian-packages.txt | sed '/^\s*$/d')
missing=()
for pkg in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    if [ "$(id -u)" -ne 0 ]; then
        echo "missing Debian packages: ${missing[*]}" >&2
        echo "run as root (or: sudo apt-get install ${missing[*]})" >&2
        exit 1
    fi
    step "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
else
    step "Debian packages: all ${#wanted[@]} present"
fi

# --- virtualenv ------------------------------------------------------------------------------
PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null; then
    echo "unicloud needs Python >= 3.11 (found: $("$PY" --version 2>&1))" >&2
    exit 1
fi
stamp=.venv/.unicloud-installed
if [ ! -x .venv/bin/python ]; then
    step "creating .venv with $("$PY" --version)"
    "$PY" -m venv .venv
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ requirements.lock -nt "$stamp" ]; then
    step "installing Python dependencies (pinned by requirements.lock)"
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -c requirements.lock -e '.[test,bench,postgres]'
    touch "$stamp"
else
    step "Python dependencies: up to date"
fi

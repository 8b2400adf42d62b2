# Shared helpers for buildpack scripts: Heroku-style output and failure reporting.
# A failure reason is a line starting with " !     "; the platform shows the first one as the
# build's error, so keep it short and specific.

puts_step() { echo "-----> $*"; }
puts_line() { echo "       $*"; }
puts_warn() { echo " !     Warning: $*"; }
indent() { sed -u 's/^/       /'; }

fail() {
  echo " !     $*"
  exit 1
}

# Export the app's config vars (ENV_DIR, one file per variable) for steps that run app code,
# except the ones that would break the build environment (same list as Heroku's).
export_env_dir() {
  local env_dir=$1 f name
  [ -d "$env_dir" ] || return 0
  for f in "$env_dir"/*; do
    [ -f "$f" ] || continue
    name=$(basename "$f")
    case "$name" in
      PATH|GIT_DIR|CPATH|CPPATH|LD_PRELOAD|LIBRARY_PATH|LD_LIBRARY_PATH|PYTHONHOME|PYTHONPATH) continue ;;
    esac
    [[ "$name" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || continue
    export "$name=$(cat "$f")"
  done
}

# read_env_dir ENV_DIR NAME: one config var's value, empty if unset.
read_env_dir() { [ -f "$1/$2" ] && cat "$1/$2" || true; }

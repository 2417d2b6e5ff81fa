# Shared by scripts/serve and scripts/test: find Python 3.11+, make .venv, install dpvault into it.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${DPVAULT_VENV:-$ROOT/.venv}"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi; }

find_python() {
  for py in python3.13 python3.12 python3.11 python3; do
    if command -v "$py" >/dev/null && "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$py"; return 0
    fi
  done
  echo "dpvault needs Python 3.11 or newer (apt-get install python3)" >&2
  return 1
}

ensure_venv() {
  # $1: the extras to install ("" for none), $2: what they are for (said on the first run)
  local extras="$1" why="${2:-}" py stamp spec="$ROOT"
  [ -n "$extras" ] && spec="$ROOT[$extras]"
  py="$(find_python)"
  if [ ! -x "$VENV/bin/python" ]; then
    echo "first run: creating $VENV with $py ..." >&2
    if ! "$py" -m venv "$VENV" 2>/dev/null; then
      echo "installing python3-venv (apt-get) ..." >&2
      as_root apt-get update -qq && as_root apt-get install -y -qq python3-venv >/dev/null
      "$py" -m venv "$VENV"
    fi
    "$VENV/bin/pip" install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
  fi
  stamp="$VENV/.dpvault-installed-${extras:-base}"
  if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
    echo "installing dpvault${extras:+ with [$extras]}${why:+ ($why)} into $VENV from PyPI; the first time takes about a minute ..." >&2
    "$VENV/bin/pip" install -q -e "$spec" 2>&1 | grep -v "^WARNING: Location" || true
    "$VENV/bin/python" -c "import dpvault" && touch "$stamp"
  fi
}

ensure_azurite() {
  # Azurite (Azure Blob's emulator, for the object-store tests), from npm into $ROOT/.npm: first run only
  if [ ! -x "$ROOT/.npm/node_modules/.bin/azurite-blob" ]; then
    if ! command -v npm >/dev/null; then
      echo "installing npm (for Azurite, the Azure Blob emulator the tests use) ..." >&2
      as_root apt-get update -qq && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null
    fi
    echo "installing Azurite 3 into $ROOT/.npm ..." >&2
    npm install --prefix "$ROOT/.npm" --no-audit --no-fund --silent azurite@3 >/dev/null
  fi
}

#!/usr/bin/env bash
# Installs uv into ./.tools when the machine has only Python 3.11+ and make.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
if command -v uv >/dev/null 2>&1; then exit 0; fi
py="$(command -v python3 || command -v python)"
"$py" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
echo "bootstrapping uv into $root/.tools" >&2
if "$py" -m venv "$root/.tools" 2>/dev/null; then
  "$root/.tools/bin/pip" install --quiet --disable-pip-version-check uv
else
  # Debian's python3 without python3-venv: a plain target directory works as well.
  rm -rf "$root/.tools"
  "$py" -m pip install --quiet --disable-pip-version-check --target "$root/.tools/lib" uv
  mkdir -p "$root/.tools/bin" && ln -sf "$root/.tools/lib/bin/uv" "$root/.tools/bin/uv"
fi
"$root/.tools/bin/uv" --version >&2

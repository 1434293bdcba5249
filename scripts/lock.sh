#!/usr/bin/env bash
# Re-lock the dependencies from pyproject.toml (run after changing them; commit the results).
set -euo pipefail
cd "$(dirname "$0")/.."
uv=.venv/bin/uv
common=(--python-version 3.11 --python-platform x86_64-unknown-linux-gnu --no-header --quiet)
"$uv" pip compile "${common[@]}" pyproject.toml -o requirements.lock
"$uv" pip compile "${common[@]}" --extra dev pyproject.toml -o requirements-dev.lock
# The installer itself is pinned too, so that CI and developers resolve alike.
echo "uv==$("$uv" --version | awk '{print $2}')" >> requirements-dev.lock
echo "uv==$("$uv" --version | awk '{print $2}')" >> requirements.lock

#!/usr/bin/env bash
# Set up podmortem from a clean checkout on Debian 12 (Python 3.11), idempotently:
# the Python virtual environment in .venv with the locked dependencies, and podmortem itself.
#
#   scripts/setup.sh          runtime dependencies only
#   scripts/setup.sh --dev    plus the test and lint tools (requirements-dev.lock)
#
# Versions come from the lock files (made with `scripts/lock.sh`); nothing floats.
set -euo pipefail
cd "$(dirname "$0")/.."

dev=0
[[ ${1:-} == --dev ]] && dev=1

log() { printf '[setup] %s\n' "$*" >&2; }

PY=${PYTHON:-}
if [[ -z $PY ]]; then
    for cand in python3.11 python3; do
        if command -v "$cand" >/dev/null && "$cand" -c 'import sys; sys.exit(sys.version_info[:2] < (3, 11))'; then
            PY=$cand
            break
        fi
    done
fi
[[ -n $PY ]] || { log "Python >= 3.11 is required"; exit 1; }

# A fresh Debian 12 has python3.11 but neither venv nor pip until python3-venv is installed.
if ! "$PY" -c 'import ensurepip, venv' 2>/dev/null; then
    log "installing python3-venv (apt)"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends python3-venv python3-pip >/dev/null
fi

if [[ ! -x .venv/bin/python ]]; then
    log "creating .venv with $PY"
    "$PY" -m venv .venv
fi
UV_VERSION=$(sed -n 's/^uv==//p' requirements-dev.lock | head -n1)
if ! .venv/bin/uv --version 2>/dev/null | grep -q "${UV_VERSION:-.}"; then
    .venv/bin/python -m pip install -q --disable-pip-version-check "uv==${UV_VERSION}"
fi
lock=requirements.lock
[[ $dev -eq 1 ]] && lock=requirements-dev.lock
log "installing locked dependencies from $lock"
.venv/bin/uv pip sync -q --compile-bytecode --python .venv/bin/python "$lock"
.venv/bin/uv pip install -q --python .venv/bin/python --no-deps -e .
# Bytecode ahead of time, as pip does when it installs: uv leaves it to the first import,
# and where PYTHONDONTWRITEBYTECODE is set (it is on these machines) every command would
# compile its imports again: 1.7 s of a 3 s acquisition. Python still checks each .pyc
# against its source, so an edited file is never run stale.
.venv/bin/python -m compileall -q -j 0 src >/dev/null
log "ready: $(.venv/bin/podmortem version)"

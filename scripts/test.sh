#!/usr/bin/env bash
# Set up everything and run the whole test suite, as CI does (`.ci/run` calls this).
#
# 1. the locked Python environment (scripts/setup.sh --dev)
# 2. the real container engines: Docker, Podman, containerd+CRI (scripts/engines.sh), which
#    the integration tests exec into; every daemon started here is stopped on exit, by PID
# 3. ruff, mypy --strict, then pytest (warnings are errors) with a coverage figure
#
# PODMORTEM_NO_ENGINES=1 skips step 2 (integration tests then skip with the reason, except
# under CI=true where a missing engine fails).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh --dev
scripts/browser.sh install   # Debian chromium for the report's headless browser test
# Microsoft's Kusto language service (pinned by its lockfile) checks the KQL of audit hunt
npm ci --prefix tests/audit/hunt/kusto --ignore-scripts --no-audit --no-fund --loglevel=error

if [[ -z ${PODMORTEM_NO_ENGINES:-} ]]; then
    scripts/engines.sh install
    # Stop on exit only what this run started: a developer's already running engines stay.
    if ! scripts/engines.sh status >/dev/null 2>&1; then
        trap 'scripts/engines.sh stop || true' EXIT
    fi
    scripts/engines.sh start
    eval "$(scripts/engines.sh env)"
fi

# Lint, types and tests all run, so that one failure does not hide another; any failure fails.
status=0
echo "== ruff"
.venv/bin/ruff check src tests benchmarks || status=1
echo "== mypy --strict src"
.venv/bin/mypy || status=1
echo "== pytest"
# pytest exits 5 when it collected no test: that is a failure for us, not a pass.
.venv/bin/pytest --cov --cov-report=term:skip-covered --cov-report=xml -p no:cacheprovider "$@" || status=$?
if [[ $status -ne 0 ]]; then
    echo "== FAILED (exit $status): see ruff, mypy and pytest output above" >&2
fi
exit $status

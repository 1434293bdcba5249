#!/usr/bin/env bash
# Set up podmortem and run its main job on the bundled example (README Quickstart, first
# command): `podmortem investigate` on a compromised image, the attack's audit log in two
# provider formats (EKS CloudWatch export + native JSON lines) and, when the test engines run
# (scripts/engines.sh start), a live container started from that image and attacked by exec.
# Writes the case to ./demo-case and the report to ./demo-case-report.html (previous demo
# output is replaced); opens nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
# A developer's environment (test tools installed) is kept whole; a fresh clone gets the
# runtime dependencies only.
if [[ -x .venv/bin/pytest ]]; then scripts/setup.sh --dev; else scripts/setup.sh; fi
pm=.venv/bin/podmortem
py=.venv/bin/python
out=${1:-demo-case}
if [[ -e $out ]]; then
    if [[ -f $out/case.json ]] && grep -q '"case_id": "DEMO-1"' "$out/case.json"; then
        rm -rf -- "$out"
    else
        echo "demo: $out exists and is not a previous demo case; pass another folder" >&2
        exit 2
    fi
fi
work=$(mktemp -d)
trap '$py examples/scenario.py cleanup "$work"; rm -rf -- "$work"' EXIT
mapfile -t args < <($py examples/scenario.py prepare "$work")
set -x
$pm investigate "${args[@]}" --case "$out" --case-id DEMO-1 --examiner "$(id -un)" \
    --report "$out-report.html" --budget 120
$pm case verify "$out"

#!/usr/bin/env bash
# Set up podmortem and run its main job on the bundled example (README Quickstart, first
# command). Writes the case to ./demo-case (removed first if it is a previous demo case).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
pm=.venv/bin/podmortem
out=${1:-demo-case}
if [[ -e $out ]]; then
    if [[ -f $out/case.json ]] && grep -q '"case_id": "DEMO-1"' "$out/case.json"; then
        rm -rf -- "$out"
    else
        echo "demo: $out exists and is not a previous demo case; pass another folder" >&2
        exit 2
    fi
fi
set -x
$pm case init "$out" --case-id DEMO-1 --examiner "$(id -un)" --description "bundled example"
$pm case add "$out" examples/audit/native-attack.jsonl --name audit/native-attack.jsonl
$pm case verify "$out"

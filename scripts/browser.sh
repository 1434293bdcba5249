#!/usr/bin/env bash
# Headless Chromium for the report's browser test (tests/report/test_browser.py).
#
#   scripts/browser.sh install   Debian's chromium + chromedriver (idempotent; apt only)
#   scripts/browser.sh path      print the chromium binary the tests use
#
# The tests drive /usr/bin/chromium through Playwright's Python client with
# executable_path=...; `playwright install` (a download from a CDN) is never run.
set -euo pipefail

PACKAGES=(chromium chromium-driver fonts-dejavu-core)

missing() {
    local p
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || echo "$p"
    done
}

case ${1:-install} in
install)
    mapfile -t need < <(missing)
    if ((${#need[@]})); then
        [[ $(id -u) -eq 0 ]] || { echo "browser.sh: must run as root to install ${need[*]}" >&2; exit 1; }
        echo "[browser] apt-get install ${need[*]}" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null \
            || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null; }
    fi
    /usr/bin/chromium --version >&2
    ;;
path) echo /usr/bin/chromium ;;
*) echo "usage: $0 install|path" >&2; exit 2 ;;
esac

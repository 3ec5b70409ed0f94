#!/usr/bin/env bash
# Make sure Debian's Chromium and its WebDriver are installed, for the web SDK's browser
# tests (tests/browser/) and `python -m engine.bench.web_latency`: installed with apt-get
# when missing and run as root; otherwise says what to install (the browser tests then skip,
# or fail under CI=true).
set -euo pipefail

missing=()
[[ -x /usr/bin/chromium ]] || missing+=(chromium)
[[ -x /usr/bin/chromedriver ]] || missing+=(chromium-driver)
((${#missing[@]} == 0)) && exit 0

if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "chromium.sh: installing ${missing[*]}" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
else
    echo "chromium.sh: ${missing[*]} missing: install them (apt-get install ${missing[*]}) for the browser tests" >&2
fi

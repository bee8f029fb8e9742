#!/usr/bin/env bash
# Render an evaluation report in headless Chromium and save a full-page PNG, to check that
# report.html opens in a browser and shows every chart.
#   scripts/screenshot_report.sh [REPORT_HTML] [OUT_PNG]
# Needs Debian's chromium (apt-get install chromium fonts-wqy-microhei); no network is used.
set -euo pipefail
report=$(realpath "${1:-build/default/report.html}")
out=${2:-build/default/report.png}
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
if [ -z "$browser" ]; then
  echo "screenshot_report: no chromium found (apt-get install chromium fonts-wqy-microhei)" >&2
  exit 2
fi
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
"$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$profile" --hide-scrollbars --window-size=1200,4200 \
  --screenshot="$(realpath -m "$out")" "file://$report" 2>/dev/null
echo "screenshot: $out"

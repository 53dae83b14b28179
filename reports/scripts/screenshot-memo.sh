#!/usr/bin/env bash
# Screenshots a rendered memo in headless Chromium, at desktop and phone width, so a broken
# layout is seen and not only broken text. Offline: the memo loads nothing from the network.
#
#   reports/scripts/screenshot-memo.sh RUN_DIR [OUT_DIR]
#
# RUN_DIR holds memo.html (render one with `drill memo RUN_DIR`). Writes OUT_DIR/memo-desktop.png
# (1280 px wide), OUT_DIR/memo-phone.png (390 px wide) and OUT_DIR/memo.pdf (print layout).
# Needs chromium (`apt-get install -y chromium`).
set -euo pipefail
run_dir=${1:?usage: screenshot-memo.sh RUN_DIR [OUT_DIR]}
out=${2:-$run_dir}
html="$(cd "$run_dir" && pwd)/memo.html"
[ -f "$html" ] || { echo "error: $html not found; run \`drill memo $run_dir\` first" >&2; exit 2; }
chrome=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
[ -n "$chrome" ] || { echo "error: chromium not found; apt-get install -y chromium" >&2; exit 2; }
mkdir -p "$out"
flags=(--headless --no-sandbox --disable-gpu --no-first-run --disable-background-networking
       --hide-scrollbars --user-data-dir="$(mktemp -d)")
"$chrome" "${flags[@]}" --window-size=1280,4200 --screenshot="$out/memo-desktop.png" "file://$html" 2>/dev/null
"$chrome" "${flags[@]}" --window-size=390,7000 --screenshot="$out/memo-phone.png" "file://$html" 2>/dev/null
"$chrome" "${flags[@]}" --no-pdf-header-footer --print-to-pdf="$out/memo.pdf" "file://$html" 2>/dev/null
echo "wrote $out/memo-desktop.png, $out/memo-phone.png, $out/memo.pdf"

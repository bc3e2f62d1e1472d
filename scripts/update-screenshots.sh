#!/usr/bin/env bash
# Refresh the console screenshots the README shows (docs/screenshots/).
#
# The browser tests (tests/e2e/test_console.py: Debian's Chromium through
# Playwright, a real uvicorn, Mosquitto and ingestion worker) save their
# screenshots in test-artifacts/screenshots/, which is not committed. This
# runs those tests and copies the pictures the README uses into
# docs/screenshots/, which is. Only the pictures of a run that passed are
# copied: a failing test would leave a half-drawn page behind.
#
# Usage: scripts/update-screenshots.sh   (after `make`; needs chromium and mosquitto)
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
ARTIFACTS="$ROOT/test-artifacts/screenshots"
TARGET="$ROOT/docs/screenshots"
# The README's pictures: the dashboard, a meter on a desktop and on a phone.
SHOTS=(dashboard meter-desktop meter-phone)

cd "$ROOT"
for shot in "${SHOTS[@]}"; do  # so an old picture never passes for a new one
    rm -f "$ARTIFACTS/$shot.png"
done
.venv/bin/pytest tests/e2e/test_console.py -q -p no:cacheprovider \
    -k "see_the_fleet or live_values_from_the_broker"

mkdir -p "$TARGET"
for shot in "${SHOTS[@]}"; do
    source="$ARTIFACTS/$shot.png"
    if [[ ! -s "$source" ]]; then
        echo "the tests did not save $source" >&2
        exit 1
    fi
    cp "$source" "$TARGET/$shot.png"
    echo "docs/screenshots/$shot.png"
done

#!/usr/bin/env bash
# Vendor the console's browser libraries from the npm registry into
# cloud/console/static/vendor/ (committed: the console never loads a CDN).
#
# Why a script and not a node_modules folder: the console needs three
# minified files; `npm pack` fetches the exact published tarball of a pinned
# version (the registry checks its integrity), we copy the built file and the
# licence, and record versions and sha256 in README.md so a review can tell
# a re-run changed nothing. Re-run after changing a version below.
set -euo pipefail

HTMX_VERSION="2.0.11"
UPLOT_VERSION="1.6.32"

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENDOR="$ROOT/cloud/console/static/vendor"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

fetch() {  # fetch <package> <version> -> unpacked into $WORK/<package>
    local package="$1" version="$2"
    (cd "$WORK" && npm pack --silent "$package@$version" >/dev/null)
    mkdir -p "$WORK/$package"
    tar -xzf "$WORK/$package-$version.tgz" -C "$WORK/$package" --strip-components=1
}

fetch htmx.org "$HTMX_VERSION"
fetch uplot "$UPLOT_VERSION"

rm -rf "$VENDOR"
mkdir -p "$VENDOR"
cp "$WORK/htmx.org/dist/htmx.min.js" "$VENDOR/htmx.min.js"
cp "$WORK/htmx.org/LICENSE" "$VENDOR/htmx.LICENSE"
cp "$WORK/uplot/dist/uPlot.iife.min.js" "$VENDOR/uPlot.iife.min.js"
cp "$WORK/uplot/dist/uPlot.min.css" "$VENDOR/uPlot.min.css"
cp "$WORK/uplot/LICENSE" "$VENDOR/uPlot.LICENSE"

{
    echo "# Vendored browser libraries of the console"
    echo
    echo "Written by \`scripts/vendor-console-assets.sh\` from the npm registry"
    echo "(\`npm pack\` of the pinned versions); do not edit by hand, re-run the"
    echo "script. Served from \`/console/static/vendor/\`; never loaded from a CDN."
    echo
    echo "| file | package | version | licence | sha256 |"
    echo "|---|---|---|---|---|"
    for file in htmx.min.js htmx.LICENSE; do
        echo "| \`$file\` | htmx.org | $HTMX_VERSION | 0BSD | \`$(sha256sum "$VENDOR/$file" | cut -d' ' -f1)\` |"
    done
    for file in uPlot.iife.min.js uPlot.min.css uPlot.LICENSE; do
        echo "| \`$file\` | uplot | $UPLOT_VERSION | MIT | \`$(sha256sum "$VENDOR/$file" | cut -d' ' -f1)\` |"
    done
} >"$VENDOR/README.md"

echo "vendored htmx.org $HTMX_VERSION and uplot $UPLOT_VERSION into $VENDOR"

#!/bin/sh
# Builds the single usbipgw binary with `deno compile`.
#
# deno compile needs the `denort` base binary of this Deno version. Deno looks for it at
# $DENORT_BIN, then at $DENO_DIR/dl/release/v<version>/denort-<target>.zip, then downloads it
# from dl.deno.land. On a machine without that download, set DENORT_BIN to a denort binary or
# pre-seed the zip; otherwise this script stops with a message saying so.
set -eu
cd "$(dirname "$0")"

version=$(deno --version | sed -n 's/^deno \([0-9.]*\).*/\1/p')
target=${TARGET:-x86_64-unknown-linux-gnu}
out=${OUT:-dist/usbipgw}
deno_dir=${DENO_DIR:-$(deno info --json | sed -n 's/.*"denoDir": *"\([^"]*\)".*/\1/p')}
zip="$deno_dir/dl/release/v$version/denort-$target.zip"

if [ -z "${DENORT_BIN:-}" ] && [ ! -f "$zip" ]; then
  if ! deno eval 'await fetch("https://dl.deno.land", { method: "HEAD", signal: AbortSignal.timeout(5000) })' >/dev/null 2>&1; then
    echo "compile.sh: cannot build: deno compile needs denort $version for $target." >&2
    echo "  dl.deno.land is not reachable from here. Either set DENORT_BIN=/path/to/denort," >&2
    echo "  or place denort-$target.zip at $zip, then run this again." >&2
    exit 1
  fi
fi

mkdir -p "$(dirname "$out")"
deno compile -A --target "$target" --include deno.json --output "$out" main.ts
echo "compile.sh: built $out"

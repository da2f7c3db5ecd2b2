#!/bin/sh
# Builds the single usbipgw binary with `deno compile` (output: dist/usbipgw, or $OUT).
#
# deno compile needs the `denort` base binary of this Deno version. Deno takes it from
# $DENORT_BIN, else from $DENO_DIR/dl/release/v<version>/denort-<target>.zip, else downloads it
# from dl.deno.land. For an air-gapped build, set DENORT_BIN or pre-seed that zip.
set -eu
cd "$(dirname "$0")"

version=$(deno --version | sed -n 's/^deno \([0-9.]*\).*/\1/p')
target=${TARGET:-x86_64-unknown-linux-gnu}
out=${OUT:-dist/usbipgw}
deno_dir=${DENO_DIR:-$(deno info --json | sed -n 's/.*"denoDir": *"\([^"]*\)".*/\1/p')}
zip="$deno_dir/dl/release/v$version/denort-$target.zip"

if [ -n "${DENORT_BIN:-}" ] && [ ! -f "$DENORT_BIN" ]; then
  echo "compile.sh: DENORT_BIN=$DENORT_BIN does not exist" >&2
  exit 1
fi

mkdir -p "$(dirname "$out")"
if ! deno compile -A --target "$target" --include deno.json --output "$out" main.ts; then
  if [ -z "${DENORT_BIN:-}" ] && [ ! -f "$zip" ]; then
    echo "compile.sh: deno compile needs denort $version for $target and could not download it." >&2
    echo "  Set DENORT_BIN=/path/to/denort, or place denort-$target.zip at" >&2
    echo "  $zip, then run this again." >&2
  fi
  exit 1
fi
echo "compile.sh: built $out"

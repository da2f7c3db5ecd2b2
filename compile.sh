#!/bin/sh
# Builds the single usbipgw binary with `deno compile`: dist/usbipgw for the x86_64 Linux
# target (the default), dist/usbipgw-aarch64-unknown-linux-gnu for TARGET=aarch64-unknown-linux-gnu,
# or $OUT. The binary has every permission baked in (-A: the gateway reads /sys, /proc and
# /dev, which Deno grants only with --allow-all) and the unstable `net` API (sd_notify).
# Everything it reads at run time is in the module graph (deno.json is imported as JSON).
#
# deno compile needs the `denort` base binary of this Deno version for the target. Deno takes
# it from $DENORT_BIN, else from $DENO_DIR/dl/release/v<version>/denort-<target>.zip, else
# downloads it from dl.deno.land. For an air-gapped build, set DENORT_BIN or pre-seed that zip.
#
# Exit status: 0 built; 1 deno compile failed; 2 a bad TARGET or DENORT_BIN;
# 3 no denort: not given and it cannot be downloaded (the last three lines of stderr say how
# to provide it).
set -eu
cd "$(dirname "$0")"

version=$(deno --version | sed -n 's/^deno \([0-9.]*\).*/\1/p')
target=${TARGET:-x86_64-unknown-linux-gnu}
case "$target" in
  x86_64-unknown-linux-gnu) default_out=dist/usbipgw ;;
  aarch64-unknown-linux-gnu) default_out=dist/usbipgw-$target ;;
  *)
    echo "compile.sh: TARGET=$target is not supported; use x86_64-unknown-linux-gnu or aarch64-unknown-linux-gnu" >&2
    exit 2
    ;;
esac
out=${OUT:-$default_out}
deno_dir=${DENO_DIR:-$(deno info --json | sed -n 's/.*"denoDir": *"\([^"]*\)".*/\1/p')}
zip="$deno_dir/dl/release/v$version/denort-$target.zip"

if [ -n "${DENORT_BIN:-}" ] && [ ! -f "$DENORT_BIN" ]; then
  echo "compile.sh: DENORT_BIN=$DENORT_BIN does not exist" >&2
  exit 2
fi

mkdir -p "$(dirname "$out")"
log=$(mktemp)
status_file=$(mktemp)
trap 'rm -f "$log" "$status_file"' EXIT
# deno's output is shown as it comes (download progress) and kept to tell why it failed.
{ deno compile -A --unstable-net --target "$target" --output "$out" main.ts 2>&1 &&
  echo 0 >"$status_file" || echo $? >"$status_file"; } | tee "$log" >&2
if [ "$(cat "$status_file")" != 0 ]; then
  if [ -z "${DENORT_BIN:-}" ] && [ ! -f "$zip" ] && grep -q "base binary\|dl\.deno\.land\|denort" "$log"; then
    echo "compile.sh: deno compile needs denort $version for $target and could not download it." >&2
    echo "  Set DENORT_BIN=/path/to/denort, or place denort-$target.zip at" >&2
    echo "  $zip, then run this again." >&2
    exit 3
  fi
  exit 1
fi
echo "compile.sh: built $out"

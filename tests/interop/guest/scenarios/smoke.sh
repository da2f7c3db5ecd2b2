# Scenario smoke: the rig itself works: modules load, vhci-hcd comes up, deno runs from the
# share and resolves the project's npm packages offline (--cached-only).

rig_client_modules
for m in usbip-host dummy_hcd libcomposite usb_f_ss_lb usbhid hid-generic evdev; do
	rig_modprobe "$m"
done
rig_field modules "$(lsmod | awk 'NR > 1 { print $1 }' | sort | rig_jarray)"
grep -q '^hs  0000 004' "$VHCI/status" || fail "vhci_hcd.0 status does not show a free port 0"

rig_need_deno
export DENO_DIR=/deno_dir DENO_NO_UPDATE_CHECK=1 DENO_NO_PROMPT=1 NO_COLOR=1
t0=$(rig_uptime)
out=$("$DENO" eval 'console.log(1 + 1)' 2>&1) || fail "deno eval failed: $out"
[ "$out" = 2 ] || fail "deno eval printed '$out', expected 2"
rig_field deno_eval_s "$(rig_since "$t0")"
rig_field_str deno_version "$("$DENO" --version | head -n 1)"

# An npm specifier straight from the lock (deno 2.9 caches no registry metadata for locked
# packages, so resolution needs the project's deno.lock: --config).
cat >/tmp/npm_smoke.ts <<'TS'
import { assertEquals } from "npm:deno-std@1.4.0/assert/mod.js";
assertEquals([1, 2], [1, 2]);
console.log("npm ok");
TS
t0=$(rig_uptime)
out=$("$DENO" run $DENO_FLAGS --config "$ROOT/deno.json" /tmp/npm_smoke.ts 2>&1) ||
	fail "deno with npm:deno-std@1.4.0 (cached only) failed: $out"
[ "$out" = "npm ok" ] || fail "npm smoke printed '$out'"
rig_field deno_npm_s "$(rig_since "$t0")"

# The project's own import map (deno.json + deno.lock, read-only share).
mkdir -p /tmp/proj
cat >/tmp/proj/smoke.ts <<'TS'
import { assertEquals } from "@std/assert";
import { getLogger } from "@logtape/logtape";
assertEquals(typeof getLogger("rig"), "object");
console.log("import map ok");
TS
t0=$(rig_uptime)
out=$("$DENO" run $DENO_FLAGS --config "$ROOT/deno.json" /tmp/proj/smoke.ts 2>&1) ||
	fail "deno with the project's deno.json (cached only) failed: $out"
[ "$out" = "import map ok" ] || fail "import map smoke printed '$out'"
rig_field deno_import_map_s "$(rig_since "$t0")"
log "smoke ok"

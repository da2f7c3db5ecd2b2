# Scenario list_attach: `usbip list -r` shows our Gadget Zero (0525:a4a0, busid 1-1) and the
# keyboard (1-2); `usbip attach` imports Gadget Zero over TCP; the guest kernel enumerates it
# and usbtest binds it; `usbip detach` frees the port; the gateway's own `list` agrees.

rig_client_modules
rig_start_gateway
rig_field gateway_start_s "$GW_START_S"

t0=$(rig_uptime)
list=$(timeout -s KILL 30 usbip list -r 127.0.0.1 2>&1)
rc=$?
rig_field usbip_list_s "$(rig_since "$t0")"
rig_field_str usbip_list "$list"
echo "usbip list -r 127.0.0.1 (exit $rc):"
echo "$list"
[ "$rc" -eq 0 ] || fail "usbip list -r 127.0.0.1 failed (exit $rc): $list"
echo "$list" | grep -E '^ +1-1: .*\(0525:a4a0\)' >/dev/null ||
	fail "usbip list does not show Gadget Zero as '1-1: ... (0525:a4a0)'"
echo "$list" | grep -E '^ +1-2: ' >/dev/null || fail "usbip list does not show busid 1-2 (keyboard)"
echo "$list" | grep -F '(03/01/01)' >/dev/null ||
	fail "usbip list shows no boot keyboard interface (03/01/01)"

# The gateway's own client.
t0=$(rig_uptime)
own=$(DENO_DIR=/deno_dir DENO_NO_UPDATE_CHECK=1 NO_COLOR=1 timeout -s KILL 60 \
	"$DENO" run -A $DENO_FLAGS "$ROOT/main.ts" list -r 127.0.0.1 2>&1)
rc=$?
rig_field own_list_s "$(rig_since "$t0")"
rig_field_str own_list "$own"
echo "main.ts list -r 127.0.0.1 (exit $rc):"
echo "$own"
[ "$rc" -eq 0 ] || fail "main.ts list -r 127.0.0.1 failed (exit $rc): $own"
echo "$own" | grep -q '1-1' || fail "main.ts list does not show busid 1-1"
echo "$own" | grep -q '1-2' || fail "main.ts list does not show busid 1-2"

t0=$(rig_uptime)
rig_attach "$GZ_BUSID"
rig_wait_gadget_zero
rig_field attach_to_usbtest_s "$(rig_since "$t0")"
rig_field_str usbip_port "$(usbip port 2>&1)"
rig_field_str usbtest_bound "$(ls /sys/bus/usb/drivers/usbtest/ | grep ':')"
rig_field_str device "$(basename "$GZ_DIR") $(cat "$GZ_DIR/speed") Mb/s \
$(cat "$GZ_DIR/manufacturer" 2>/dev/null) / $(cat "$GZ_DIR/product" 2>/dev/null)"
[ "$(cat "$GZ_DIR/speed")" = 480 ] || fail "Gadget Zero is not high speed: $(cat "$GZ_DIR/speed") Mb/s"

port=$(rig_vhci_port "$(basename "$GZ_DIR")") || fail "no vhci port holds $(basename "$GZ_DIR")"
out=$(usbip detach -p "$port" 2>&1) || fail "usbip detach -p $port failed: $out"
rig_wait 10 rig_vhci_free || fail "vhci port $port still in use 10 s after detach"
rig_wait 10 eval '! rig_vhci_device 0525:a4a0 >/dev/null' || fail "Gadget Zero still present after detach"

rig_stop_gateway TERM
log "list_attach ok"

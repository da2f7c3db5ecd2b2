# Scenario unix_attach: OP_REQ_IMPORT over the gateway's unix socket (rig-unix-attach), the
# connected unix socket handed to vhci_hcd's sysfs attach; then testusb test 1 through it.

rig_client_modules
rig_start_gateway
rig_field gateway_start_s "$GW_START_S"

t0=$(rig_uptime)
out=$(timeout -s KILL 30 rig-unix-attach "$GW_SOCK" "$GZ_BUSID" 2>&1)
rc=$?
echo "rig-unix-attach $GW_SOCK $GZ_BUSID (exit $rc): $out"
rig_field_str unix_attach "$out"
[ "$rc" -eq 0 ] || fail "import over the unix socket failed (exit $rc): $out"
case "$out" in
*"speed=3"*) ;;
*) fail "the gateway reported another speed than high (3) for Gadget Zero: $out" ;;
esac
rig_wait_gadget_zero
rig_field attach_to_usbtest_s "$(rig_since "$t0")"
rig_field_str vhci_status "$(grep -v ' 004 ' "$VHCI/status")"

TESTUSB_ARGS="-c 100 -s 512 -g 32 -v 421"
bad=$(rig_testusb_suite unix "$GZ_DEV" 1 2)
rig_field tests "$(rig_tests_json unix)"
[ -z "$bad" ] || fail "testusb tests through the unix socket did not pass: $bad"

port=$(rig_vhci_port "$(basename "$GZ_DIR")") || fail "no vhci port holds Gadget Zero"
usbip detach -p "$port" >/dev/null 2>&1 || fail "usbip detach -p $port failed"
rig_wait 10 rig_vhci_free || fail "vhci port $port still in use 10 s after detach"
rig_stop_gateway TERM
log "unix_attach ok"

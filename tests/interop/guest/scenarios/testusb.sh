# Scenario testusb: the kernel's usbtest suite against our Gadget Zero through vhci (TCP).
# Tests 0-14, 17-21, 24, 27-29 with usbtest's default altsetting; the ISO tests 15, 16, 22, 23
# with usbtest alt=1 (Gadget Zero's ISO altsetting). All must pass, unlink tests 11, 12, 24
# included. Per-test seconds (testusb's own timing) go to result.json for BENCHMARKS.md.

rig_client_modules
rig_start_gateway
rig_field gateway_start_s "$GW_START_S"
rig_attach "$GZ_BUSID"
rig_wait_gadget_zero
rig_field enumerate_s "$GZ_ENUM_S"
# The speed the hub gave it: 480 (Mb/s) at high speed, 5000 on vhci's SuperSpeed hub.
rig_field speed_mbps "$(cat "$GZ_DIR/speed")"
rig_field_str testusb_args "$TESTUSB_ARGS"
rig_field_str testusb_read_vary_args "$TESTUSB_READ_VARY_ARGS"
rig_field_str testusb_bulk_args "$TESTUSB_BULK_ARGS"

TESTS="0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 17 18 19 20 21 24 27 28 29"
ISO_TESTS="15 16 22 23"
rig_field_str tests_run "$TESTS"
rig_field_str iso_tests_run "$ISO_TESTS"

log "testusb (alt 0) on $GZ_DEV"
bad=$(rig_testusb_suite bulk "$GZ_DEV" $TESTS)
rig_field tests "$(rig_tests_json bulk)"

if rig_alive "$GW_PID" && rig_usbtest_bound "$GZ_DIR"; then
	rig_usbtest_alt 1 "$GZ_DIR"
	log "testusb ISO (alt 1) on $GZ_DEV"
	bad_iso=$(rig_testusb_suite iso "$GZ_DEV" $ISO_TESTS)
	rig_usbtest_alt -1 "$GZ_DIR"
else
	bad_iso="$ISO_TESTS"
	echo "ISO tests not run: the gateway or the device is gone" >&2
fi
rig_field iso_tests "$(rig_tests_json iso)"
rig_field_str not_passed "$(echo $bad $bad_iso)"

rig_alive "$GW_PID" || fail "the gateway died during testusb (failed:$bad $bad_iso)"
[ -z "$bad$bad_iso" ] || fail "testusb tests did not pass: $(echo $bad $bad_iso)"
port=$(rig_vhci_port "$(basename "$GZ_DIR")") || fail "no vhci port holds Gadget Zero after the tests"
usbip detach -p "$port" >/dev/null 2>&1 || fail "usbip detach -p $port failed"
rig_wait 10 rig_vhci_free || fail "vhci port $port still in use 10 s after detach"
rig_stop_gateway TERM
log "testusb ok"

# Scenario testusb_baseline (a benchmark, on demand; issue 20): usbipgw's Gadget Zero and the
# kernel's own (configfs SourceSink on dummy_hcd, exported by usbip-host + usbipd), both attached
# through vhci in one VM, run the testusb tests both pass (the unlink tests 11, 12 and 24 crash
# usbip-host, see kernel_baseline) in ROUNDS rounds, each of them every test on ours and then on
# the kernel's, so that a change of the host's load meets both. Per-test seconds (testusb's own
# timing) per round go to result.json as ours_N and kernel_N.

ROUNDS=3
TESTS="1 2 3 4 5 6 7 8 9 10 13 14 17 18 19 20 21 27 28 29"
rig_field rounds "$ROUNDS"
rig_field_str tests_run "$TESTS"
rig_field_str testusb_args "$TESTUSB_ARGS"
rig_field_str testusb_read_vary_args "$TESTUSB_READ_VARY_ARGS"
rig_field_str testusb_bulk_args "$TESTUSB_BULK_ARGS"

# _other_gadget_zero DEVDIR: a Gadget Zero under vhci, bound to usbtest, other than DEVDIR; sets
# OTHER_GZ.
_other_gadget_zero() {
	for _d in /sys/bus/usb/devices/*; do
		[ "$_d" != "$1" ] && [ -f "$_d/idVendor" ] || continue
		[ "$(cat "$_d/idVendor"):$(cat "$_d/idProduct")" = 0525:a4a0 ] || continue
		case "$(readlink -f "$_d")" in *vhci_hcd*) ;; *) continue ;; esac
		rig_usbtest_bound "$_d" || continue
		OTHER_GZ=$_d
		return 0
	done
	return 1
}

rig_client_modules
rig_kernel_gadget_zero
rig_wait 20 rig_usbtest_bound "$KGZ_DIR" || fail "usbtest did not bind the gadget on dummy_hcd"
KPORT=3241
log "exporting the kernel's Gadget Zero $KGZ_BUSID with usbip-host + usbipd on port $KPORT"
usbip bind -b "$KGZ_BUSID" || fail "usbip bind -b $KGZ_BUSID failed"
usbipd -D -t "$KPORT" || fail "usbipd -D -t $KPORT failed"
rig_wait 20 eval 'usbip --tcp-port $KPORT list -r 127.0.0.1 >/dev/null 2>&1' ||
	fail "usbipd does not answer"
rig_try_attach "$KGZ_BUSID" 127.0.0.1 "$KPORT" || fail "usbip attach of the kernel's Gadget Zero failed: $_out"
rig_wait_gadget_zero
KERNEL_DIR=$GZ_DIR
KERNEL_DEV=$GZ_DEV

# iso=0: the same descriptors as the kernel's SourceSink, which leaves its isochronous
# alternate setting out on dummy_hcd (no isochronous endpoints there); with it, test 9 (chapter 9
# requests) would ask ours four requests more per iteration (SET_INTERFACE and GET_INTERFACE for
# alternate setting 1): 1,301 URBs against 901, counted with usbmon.
GW_ARGS="serve --tcp 127.0.0.1:3240 --unix $GW_SOCK --device gadget-zero:busid=$GZ_BUSID,iso=0 \
--rule allow:transport=tcp,source=127.0.0.0/8,busid=$GZ_BUSID"
rig_start_gateway
rig_attach "$GZ_BUSID"
rig_wait 20 _other_gadget_zero "$KERNEL_DIR" ||
	fail "our Gadget Zero did not appear under vhci bound to usbtest"
OURS_DEV=$(rig_devnode "$OTHER_GZ") || fail "our Gadget Zero went away"
log "ours $OURS_DEV, the kernel's $KERNEL_DEV"

bad=
round=1
while [ "$round" -le "$ROUNDS" ]; do
	log "round $round: testusb on ours, then on the kernel's"
	# shellcheck disable=SC2086 # word lists
	b=$(rig_testusb_suite "ours_$round" "$OURS_DEV" $TESTS)
	[ -z "$b" ] || bad="$bad ours_$round:$b"
	# shellcheck disable=SC2086
	b=$(rig_testusb_suite "kernel_$round" "$KERNEL_DEV" $TESTS)
	[ -z "$b" ] || bad="$bad kernel_$round:$b"
	rig_field "ours_$round" "$(rig_tests_json "ours_$round")"
	rig_field "kernel_$round" "$(rig_tests_json "kernel_$round")"
	round=$((round + 1))
done
rig_field_str not_passed "${bad# }"
rig_alive "$GW_PID" || fail "the gateway died during testusb"
[ -z "$bad" ] || fail "testusb tests did not pass: $bad"
for _dir in "$OTHER_GZ" "$KERNEL_DIR"; do
	port=$(rig_vhci_port "$(basename "$_dir")") && usbip detach -p "$port" >/dev/null 2>&1
done
rig_wait 10 rig_vhci_free || fail "vhci ports still in use 10 s after detach"
killall usbipd 2>/dev/null
rig_stop_gateway TERM
log "testusb_baseline ok"

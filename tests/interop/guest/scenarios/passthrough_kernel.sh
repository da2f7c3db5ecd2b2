# Scenario passthrough_kernel: the passthrough checks (guest/passthrough.sh) with the kernel's
# own server, usbip-host + usbipd, exporting QEMU's stick, usb-kbd and FTDI usb-serial: proves
# the rig (QEMU devices, the stick image, QMP unplug and re-plug) independently of the gateway.

PT_SERVER=kernel
pt_start_server() {
	rig_modprobe usbip-host
	_t0=$(rig_uptime)
	for _b in "$STICK_BUSID" "$KBD_BUSID" "$FTDI_BUSID"; do
		_out=$(usbip bind -b "$_b" 2>&1) || fail "usbip bind -b $_b failed: $_out"
	done
	usbipd -D || fail "usbipd -D failed"
	rig_wait 20 eval 'usbip list -r 127.0.0.1 >/dev/null 2>&1' || fail "usbipd does not answer"
	GW_START_S=$(rig_since "$_t0")
}

# usbip-host does not take a re-plugged device back by itself (usb-storage binds it): bind again.
pt_reexport() {
	rig_wait 20 test -d "/sys/bus/usb/drivers/usb-storage/$STICK_BUSID:1.0" ||
		fail "usb-storage did not bind the re-plugged stick within 20 s"
	usbip unbind -b "$STICK_BUSID" >/dev/null 2>&1
	_out=$(usbip bind -b "$STICK_BUSID" 2>&1) || fail "usbip bind -b $STICK_BUSID (re-plugged) failed: $_out"
}

. /rig/passthrough.sh

for b in "$STICK_BUSID" "$KBD_BUSID" "$FTDI_BUSID"; do
	usbip unbind -b "$b" >/dev/null 2>&1
done
killall usbipd 2>/dev/null
pt_require_native_bound "after usbip unbind"
log "passthrough_kernel ok"

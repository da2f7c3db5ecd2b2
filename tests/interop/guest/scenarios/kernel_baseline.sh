# Scenario kernel_baseline (a benchmark): the kernel's own Gadget Zero (configfs SourceSink in
# configuration 3, Loopback in configuration 2, 0525:a4a0) on dummy_hcd, run with testusb
# directly and then exported by usbip-host/usbipd and attached through vhci in the same VM.

for m in configfs dummy_hcd libcomposite usb_f_ss_lb usbip-host vhci-hcd usbtest; do
	rig_modprobe "$m"
done
mount -t configfs none /sys/kernel/config 2>/dev/null
G=/sys/kernel/config/usb_gadget/gz
mkdir "$G" || fail "cannot create a configfs gadget"
echo 0x0525 >"$G/idVendor"
echo 0xa4a0 >"$G/idProduct"
echo 0x0200 >"$G/bcdUSB"
mkdir "$G/strings/0x409"
echo "usbipgw rig" >"$G/strings/0x409/manufacturer"
echo "Gadget Zero (kernel)" >"$G/strings/0x409/product"
echo "0123456789" >"$G/strings/0x409/serialnumber"
mkdir "$G/functions/SourceSink.0" "$G/functions/Loopback.0" || fail "no SourceSink/Loopback"
mkdir "$G/configs/c.3" "$G/configs/c.2"
mkdir "$G/configs/c.3/strings/0x409" "$G/configs/c.2/strings/0x409"
echo "source/sink" >"$G/configs/c.3/strings/0x409/configuration"
echo "loopback" >"$G/configs/c.2/strings/0x409/configuration"
ln -s "$G/functions/SourceSink.0" "$G/configs/c.3/"
ln -s "$G/functions/Loopback.0" "$G/configs/c.2/"
udc=$(ls /sys/class/udc | head -n 1)
[ -n "$udc" ] || fail "no UDC (dummy_udc) found"
echo "$udc" >"$G/UDC" || fail "cannot bind the gadget to $udc"

direct_dev() {
	for d in /sys/bus/usb/devices/*; do
		[ -f "$d/idVendor" ] || continue
		[ "$(cat "$d/idVendor"):$(cat "$d/idProduct")" = 0525:a4a0 ] || continue
		case "$(readlink -f "$d")" in *vhci_hcd*) continue ;; esac
		echo "$d"
		return 0
	done
	return 1
}
rig_wait 20 direct_dev >/dev/null || fail "the configfs Gadget Zero did not enumerate on dummy_hcd"
DDIR=$(direct_dev)
BUSID=$(basename "$DDIR")
rig_wait 20 rig_usbtest_bound "$DDIR" || fail "usbtest did not bind the gadget on dummy_hcd"
log "kernel Gadget Zero at $BUSID ($(cat "$DDIR/speed") Mb/s), bound to usbtest"
rig_field_str busid "$BUSID"
rig_field_str testusb_args "$TESTUSB_ARGS"
rig_field_str testusb_bulk_args "$TESTUSB_BULK_ARGS"

# Unlink tests 11 and 12 crash the kernel's usbip-host: not part of the baseline.
TESTS="0 1 2 3 4 5 6 7 8 9 10 13 14 17 18 19 20 21 24 27 28 29"
rig_field_str tests_run "$TESTS"

log "testusb directly on dummy_hcd"
bad_direct=$(rig_testusb_suite direct "$(rig_devnode "$DDIR")" $TESTS)
rig_field direct "$(rig_tests_json direct)"

log "exporting $BUSID with usbip-host + usbipd"
usbip bind -b "$BUSID" || fail "usbip bind -b $BUSID failed"
usbipd -D || fail "usbipd -D failed"
rig_wait 20 eval 'usbip list -r 127.0.0.1 >/dev/null 2>&1' || fail "usbipd does not answer"
rig_field_str usbip_list "$(usbip list -r 127.0.0.1 2>&1)"
rig_attach "$BUSID"
rig_wait_gadget_zero
rig_field enumerate_s "$GZ_ENUM_S"

log "testusb through usbip-host + vhci"
bad_vhci=$(rig_testusb_suite vhci "$GZ_DEV" $TESTS)
rig_field vhci "$(rig_tests_json vhci)"

port=$(rig_vhci_port "$(basename "$GZ_DIR")")
usbip detach -p "$port" || fail "usbip detach -p $port failed"
rig_wait 10 rig_vhci_free || fail "vhci port $port not freed after detach"
killall usbipd 2>/dev/null

[ -z "$bad_direct" ] || fail "kernel Gadget Zero failed tests on dummy_hcd: $bad_direct"
[ -z "$bad_vhci" ] || fail "kernel Gadget Zero failed tests through vhci: $bad_vhci"
log "kernel_baseline ok"

# Scenario passthrough_baseline (a benchmark, no verdict on the gateway): read throughput of
# QEMU's usb-storage stick, 64 MiB with O_DIRECT (dd bs=1M iflag=direct), five times each
# after a warm-up read (median and best recorded):
# directly on xhci (usb-storage), through the kernel's usbip-host + usbipd + vhci, and through
# our gateway (`host:` device) + vhci, all in the same VM. The gateway part is recorded as
# missing (gateway_note) while the gateway has no `host` device type.

DD_RUNS="1 2 3 4 5"
rig_qemu_usb_modules
rig_wait 20 rig_native_device "$STICK_ID" >/dev/null || fail "QEMU's stick did not enumerate on xhci within 20 s"
STICK_BUSID=$(basename "$(rig_native_device "$STICK_ID")")
rig_field_str busid "$STICK_BUSID"
rig_wait 20 rig_native_disk >/dev/null || fail "no disk for the stick on xhci within 20 s"
rig_field_str dd_args "if=DISK of=/dev/null bs=1M count=64 iflag=direct"

# bench LABEL DISK: a 16 MiB warm-up read (TCG translates the paths on first use), then
# DD_RUNS reads of 64 MiB; records LABEL_mbs (all runs), LABEL_median_mbs and LABEL_best_mbs.
bench() {
	timeout -s KILL 60 dd if="$2" of=/dev/null bs=1M count=16 iflag=direct 2>/dev/null ||
		fail "$1: warm-up dd of $2 failed"
	_all=
	for _r in $DD_RUNS; do
		_m=$(rig_dd_mbs "$2" "$1 run $_r") || fail "$1: dd of $2 failed"
		_all="$_all${_all:+ }$_m"
	done
	_sorted=$(echo "$_all" | tr ' ' '\n' | sort -n)
	_median=$(echo "$_sorted" | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
	_best=$(echo "$_sorted" | tail -n 1)
	rig_field "$1_mbs" "[$(echo "$_all" | sed 's/ /, /g')]"
	rig_field "$1_median_mbs" "$_median"
	rig_field "$1_best_mbs" "$_best"
	log "$1: $_all MB/s (median $_median, best $_best)"
}

bench direct "$(rig_native_disk)"

log "kernel: usbip-host + usbipd export $STICK_BUSID"
rig_modprobe usbip-host
rig_modprobe vhci-hcd
out=$(usbip bind -b "$STICK_BUSID" 2>&1) || fail "usbip bind -b $STICK_BUSID failed: $out"
usbipd -D || fail "usbipd -D failed"
rig_wait 20 eval 'usbip list -r 127.0.0.1 >/dev/null 2>&1' || fail "usbipd does not answer"
rig_attach "$STICK_BUSID"
rig_wait 30 rig_vhci_disk >/dev/null || fail "kernel: no disk under vhci_hcd within 30 s"
bench kernel "$(rig_vhci_disk)"
port=$(rig_vhci_port "$(basename "$(rig_vhci_device "$STICK_ID")")") || fail "kernel: no vhci port for the stick"
usbip detach -p "$port" >/dev/null || fail "kernel: usbip detach -p $port failed"
rig_wait 10 rig_vhci_free || fail "kernel: vhci port $port not freed after detach"
killall usbipd 2>/dev/null
usbip unbind -b "$STICK_BUSID" >/dev/null || fail "usbip unbind -b $STICK_BUSID failed"
rig_wait 20 test -d "/sys/bus/usb/drivers/usb-storage/$STICK_BUSID:1.0" ||
	fail "usb-storage did not bind the stick again after usbip unbind"

rig_need_deno
help=$(DENO_DIR=/deno_dir DENO_NO_UPDATE_CHECK=1 NO_COLOR=1 timeout -s KILL 60 \
	"$DENO" run -A $DENO_FLAGS "$ROOT/main.ts" serve --help 2>&1)
if ! echo "$help" | grep -qE '^ +host '; then
	rig_field gateway_mbs null
	rig_field gateway_median_mbs null
	rig_field gateway_best_mbs null
	rig_field_str gateway_note "the gateway has no 'host' device type yet (main.ts serve --help)"
	log "gateway: no host device type; only the kernel baseline was measured"
	log "passthrough_baseline ok"
	exit 0
fi
GW_ARGS="serve --tcp 127.0.0.1:3240 --unix $GW_SOCK --device host:vid=46f4,pid=0001 \
--rule allow:transport=tcp,source=127.0.0.0/8"
rig_start_gateway
rig_attach "$STICK_BUSID"
rig_wait 30 rig_vhci_disk >/dev/null || fail "gateway: no disk under vhci_hcd within 30 s"
bench gateway "$(rig_vhci_disk)"
port=$(rig_vhci_port "$(basename "$(rig_vhci_device "$STICK_ID")")") || fail "gateway: no vhci port for the stick"
usbip detach -p "$port" >/dev/null || fail "gateway: usbip detach -p $port failed"
rig_wait 10 rig_vhci_free || fail "gateway: vhci port $port not freed after detach"
rig_stop_gateway TERM
log "passthrough_baseline ok"

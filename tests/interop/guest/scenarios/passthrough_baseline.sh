# Scenario passthrough_baseline (a benchmark, no verdict on the gateway's speed): read
# throughput of QEMU's usb-storage stick, 64 MiB with O_DIRECT (dd bs=1M iflag=direct), directly
# on xhci (usb-storage), through the kernel's usbip-host + usbipd + vhci, and through our gateway
# (`host:` device) + vhci, all in the same VM; requests through vhci are 128 KiB (MAX_KIB). The
# stick can be exported by one server at a time, so the two servers take turns: ROUNDS rounds,
# each of them one read through each (the order swapped every other round), the stick attached
# afresh for each read after a warm-up read, so that a change of the host's load meets both
# alike; the paired ratios (gateway over kernel, one per round) go to result.json with the reads.
# The gateway must export the stick again each time usbip-host lets it go.

ROUNDS=5
rig_field rounds "$ROUNDS"
# Requests through vhci of 128 KiB each, for both servers: a request is otherwise as large as
# the physical runs of dd's buffer allow (vhci takes 32 scatterlist entries), 128 KiB to 1 MiB
# from one dd to the next, and a server's rate follows the request size (per request it pays
# three round trips), so reads of different sizes would not compare.
MAX_KIB=128
rig_field vhci_max_sectors_kb "$MAX_KIB"
rig_qemu_usb_modules
rig_wait 20 rig_native_device "$STICK_ID" >/dev/null || fail "QEMU's stick did not enumerate on xhci within 20 s"
STICK_BUSID=$(basename "$(rig_native_device "$STICK_ID")")
rig_field_str busid "$STICK_BUSID"
rig_wait 20 rig_native_disk >/dev/null || fail "no disk for the stick on xhci within 20 s"
rig_field_str dd_args "if=DISK of=/dev/null bs=1M count=64 iflag=direct"

# read_once LABEL DISK: a 16 MiB warm-up read (TCG translates the paths on first use), then one
# read of 64 MiB; sets MBS to its MB/s and KIB to the KiB per read request the disk got (its
# stat file: reads completed and sectors read; a request is as large as the physical runs of
# dd's buffer allow, which differs from one dd to the next).
read_once() {
	timeout -s KILL 60 dd if="$2" of=/dev/null bs=1M count=16 iflag=direct 2>/dev/null ||
		fail "$1: warm-up dd of $2 failed"
	_stat=/sys/block/$(basename "$2")/stat
	_before=$(cat "$_stat")
	MBS=$(rig_dd_mbs "$2" "$1") || fail "$1: dd of $2 failed"
	KIB=$(echo "$_before $(cat "$_stat")" |
		awk '{ n = NF / 2; r = $(n + 1) - $1; printf "%.0f", (r > 0 ? ($(n + 3) - $3) / 2 / r : 0) }')
}

# median_of "NUMBERS...": the middle one (the upper middle of an even count).
median_of() {
	echo "$1" | tr ' ' '\n' | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}

# json_list "NUMBERS...": the numbers as a JSON array.
json_list() {
	echo "[$(echo "$1" | sed 's/ /, /g')]"
}

# record LABEL "MB/S...": LABEL_mbs (every read), LABEL_median_mbs and LABEL_best_mbs.
record() {
	rig_field "$1_mbs" "$(json_list "$2")"
	rig_field "$1_median_mbs" "$(median_of "$2")"
	rig_field "$1_best_mbs" "$(echo "$2" | tr ' ' '\n' | sort -n | tail -n 1)"
	log "$1: $2 MB/s"
}

# native_again WHEN: usb-storage has the stick on xhci again (after usbip unbind, or after the
# gateway's session gave its interfaces back).
native_again() {
	rig_wait 20 test -d "/sys/bus/usb/drivers/usb-storage/$STICK_BUSID:1.0" ||
		fail "usb-storage did not bind the stick again within 20 s $1"
}

# through LABEL [TCP_PORT]: attaches the stick from the server on TCP_PORT (default 3240, the
# gateway), reads it once (read_once: MBS), detaches it.
through() {
	rig_attach "$STICK_BUSID" 127.0.0.1 "${2:-3240}"
	rig_wait 30 rig_vhci_disk >/dev/null || fail "$1: no disk under vhci_hcd within 30 s"
	_disk=$(rig_vhci_disk)
	echo "$MAX_KIB" >"/sys/block/$(basename "$_disk")/queue/max_sectors_kb" ||
		fail "$1: cannot set max_sectors_kb of $_disk to $MAX_KIB"
	read_once "$1" "$_disk"
	_port=$(rig_vhci_port "$(basename "$(rig_vhci_device "$STICK_ID")")") || fail "$1: no vhci port for the stick"
	usbip detach -p "$_port" >/dev/null || fail "$1: usbip detach -p $_port failed"
	rig_wait 10 rig_vhci_free || fail "$1: vhci port $_port not freed after detach"
}

# kernel_read: one read through usbip-host, bound for it and unbound after; sets K.
KPORT=3241
kernel_read() {
	_out=$(usbip bind -b "$STICK_BUSID" 2>&1) || fail "usbip bind -b $STICK_BUSID failed: $_out"
	through kernel "$KPORT"
	K=$MBS
	KK=$KIB
	usbip unbind -b "$STICK_BUSID" >/dev/null || fail "usbip unbind -b $STICK_BUSID failed"
	native_again "after usbip unbind"
}

# gateway_read: one read through the gateway, once it exports the stick again (it watches
# sysfs each second and takes the stick back when usbip-host has let it go); sets G.
gateway_read() {
	rig_wait 20 rig_list_has "$STICK_BUSID" || fail "the gateway does not export $STICK_BUSID again within 20 s"
	through gateway
	G=$MBS
	GK=$KIB
	native_again "after the gateway's session ended"
}

all=
_r=1
while [ "$_r" -le "$ROUNDS" ]; do
	read_once "direct run $_r" "$(rig_native_disk)"
	all="$all${all:+ }$MBS"
	_r=$((_r + 1))
done
record direct "$all"

rig_modprobe usbip-host
rig_modprobe vhci-hcd
usbipd -D -t "$KPORT" || fail "usbipd -D -t $KPORT failed"
rig_wait 20 eval 'usbip --tcp-port $KPORT list -r 127.0.0.1 >/dev/null 2>&1' || fail "usbipd does not answer"

GW_ARGS="serve --tcp 127.0.0.1:3240 --unix $GW_SOCK --device host:vid=46f4,pid=0001 \
--rule allow:transport=tcp,source=127.0.0.0/8"
rig_start_gateway

kernel_all=
gateway_all=
ratios=
kib=
round=1
while [ "$round" -le "$ROUNDS" ]; do
	if [ $((round % 2)) -eq 1 ]; then
		kernel_read
		gateway_read
	else
		gateway_read
		kernel_read
	fi
	kernel_all="$kernel_all${kernel_all:+ }$K"
	gateway_all="$gateway_all${gateway_all:+ }$G"
	ratios="$ratios${ratios:+ }$(awk -v g="$G" -v k="$K" 'BEGIN { printf "%.2f", g / k }')"
	kib="$kib${kib:+ }$KK/$GK"
	log "round $round: kernel $K MB/s ($KK KiB per request), gateway $G MB/s ($GK KiB)"
	round=$((round + 1))
done
record kernel "$kernel_all"
record gateway "$gateway_all"
rig_field gateway_kernel_ratios "$(json_list "$ratios")"
rig_field_str kib_per_request_kernel_gateway "$kib"
rig_field gateway_kernel_ratio_median "$(median_of "$ratios")"
rig_stop_gateway TERM
killall usbipd 2>/dev/null
log "passthrough_baseline ok"

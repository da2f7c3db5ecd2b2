# Scenario gateway_ab (issue 20; a benchmark, no verdict): the gateway of another commit
# ("before", a `git archive` tree that run.ts --before REV puts in the share, rig.before=PATH)
# against this checkout's ("after"), in one VM, in turns before, after, after, before, ... so
# that the host's load, which drifts over minutes, weighs on both alike. Without --before both
# sides are this checkout: the run then shows the noise floor. Each turn starts its gateway,
# attaches the device, warms up, runs the workload (rig.ab_workload) and records its figures
# and the gateway's CPU ticks (utime + stime from /proc/PID/stat, USER_HZ):
#   passthrough    QEMU's stick as host:vid=46f4,pid=0001: three 64 MiB O_DIRECT dd reads;
#   storage        our drive (tmpfs image, high speed): three 32 MiB dd writes, three reads;
#   storage_super  the same with speed=super;
#                  (storage turns also record the wake-ups of the gateway's main thread);
#   control        Gadget Zero: testusb tests 9 and 10 (chapter 9 and queued control requests).
# tests/interop/gateway_ab.ts turns the turns into medians and paired ratios.

. /rig/storage.sh

AB_WORKLOAD=${RIG_AB_WORKLOAD:-passthrough}
AB_TURNS="before after after before before after after before"
# st_dd_mbs (storage.sh) sizes its figures by ST_MIB.
ST_MIB=32
rig_field_str workload "$AB_WORKLOAD"
rig_field_str before_tree "${RIG_BEFORE:-}"
[ -z "$RIG_BEFORE" ] || [ -f "$ROOT/$RIG_BEFORE/main.ts" ] ||
	fail "the before tree $RIG_BEFORE has no main.ts"

case $AB_WORKLOAD in
passthrough)
	rig_qemu_usb_modules
	rig_modprobe vhci-hcd
	rig_wait 20 rig_native_device "$STICK_ID" >/dev/null ||
		fail "QEMU's stick did not enumerate on xhci within 20 s"
	AB_BUSID=$(basename "$(rig_native_device "$STICK_ID")")
	AB_DEVICE="host:vid=46f4,pid=0001"
	;;
storage | storage_super)
	st_modules
	AB_BUSID=1-1
	AB_SPEED=
	[ "$AB_WORKLOAD" = storage_super ] && AB_SPEED=",speed=super"
	AB_DEVICE="storage:busid=1-1,image=/tmp/ab.img,size=$((ST_MIB + 16))M,product=RIG-AB$AB_SPEED"
	;;
control)
	rig_client_modules
	AB_BUSID=$GZ_BUSID
	AB_DEVICE="gadget-zero:busid=$GZ_BUSID"
	;;
*) fail "unknown workload $AB_WORKLOAD (passthrough, storage, storage_super or control)" ;;
esac
GW_ARGS="serve --tcp 127.0.0.1:3240 --unix $GW_SOCK --device $AB_DEVICE \
--rule allow:transport=tcp,source=127.0.0.0/8"

# ab_cpu: the gateway's CPU ticks so far.
ab_cpu() {
	awk '{ print $14 + $15 }' "/proc/$GW_PID/stat"
}

# ab_wakeups: how often the gateway's main (JavaScript) thread has slept to be woken again
# (voluntary_ctxt_switches of the process's first thread, proc(5)).
ab_wakeups() {
	awk '/^voluntary_ctxt_switches/ { print $2 }' "/proc/$GW_PID/status"
}

# ab_start SIDE: starts the gateway of SIDE (before: the tree in RIG_BEFORE, with its own
# deno.json; after, or before without a tree: this checkout).
ab_start() {
	_root=$ROOT
	_flags=$DENO_FLAGS
	if [ "$1" = before ] && [ -n "$RIG_BEFORE" ]; then
		ROOT="$ROOT/$RIG_BEFORE"
		DENO_FLAGS="$DENO_FLAGS --config $ROOT/deno.json"
	fi
	rig_try_gateway
	_ok=$?
	ROOT=$_root
	DENO_FLAGS=$_flags
	[ "$_ok" -eq 0 ] || fail "$1: $RIG_GW_ERR"
}

# ab_turn N SIDE: one turn; appends its JSON object to $W/turns.
ab_turn() {
	ab_start "$2"
	_fig=
	case $AB_WORKLOAD in
	passthrough)
		rig_attach "$AB_BUSID"
		rig_wait 30 rig_vhci_disk >/dev/null || fail "turn $1 ($2): no disk under vhci_hcd within 30 s"
		_d=$(rig_vhci_disk)
		timeout -s KILL 60 dd if="$_d" of=/dev/null bs=1M count=16 iflag=direct 2>/dev/null ||
			fail "turn $1 ($2): warm-up read failed"
		_c0=$(ab_cpu)
		_r=
		for _i in 1 2 3; do _r="$_r${_r:+, }$(rig_dd_mbs "$_d" "turn $1 ($2) read $_i")"; done
		_fig="\"read_mbs\": [$_r], \"read_cpu_ticks\": $(($(ab_cpu) - _c0))"
		_port=$(rig_vhci_port "$(basename "$(rig_vhci_device "$STICK_ID")")") || fail "turn $1: no vhci port"
		usbip detach -p "$_port" >/dev/null || fail "turn $1: usbip detach -p $_port failed"
		rig_wait 10 rig_vhci_free || fail "turn $1: vhci port $_port not freed"
		;;
	storage | storage_super)
		st_attach "$AB_BUSID" RIG-AB "ab_$1"
		_d=$ST_DISK
		_p=$ST_PORT
		timeout -s KILL 120 dd if=/dev/zero of="$_d" bs=1M count=8 oflag=direct conv=fsync 2>/dev/null ||
			fail "turn $1 ($2): warm-up write failed"
		timeout -s KILL 120 dd if="$_d" of=/dev/null bs=1M count=8 iflag=direct 2>/dev/null ||
			fail "turn $1 ($2): warm-up read failed"
		_c0=$(ab_cpu)
		_v0=$(ab_wakeups)
		_w=
		for _i in 1 2 3; do
			_w="$_w${_w:+, }$(st_dd_mbs "turn $1 write" if=/dev/zero of="$_d" bs=1M count="$ST_MIB" oflag=direct conv=fsync)"
		done
		_c1=$(ab_cpu)
		_v1=$(ab_wakeups)
		_r=
		for _i in 1 2 3; do
			_r="$_r${_r:+, }$(st_dd_mbs "turn $1 read" if="$_d" of=/dev/null bs=1M count="$ST_MIB" iflag=direct)"
		done
		_fig="\"write_mbs\": [$_w], \"write_cpu_ticks\": $((_c1 - _c0)), \"write_wakeups\": $((_v1 - _v0))"
		_fig="$_fig, \"read_mbs\": [$_r], \"read_cpu_ticks\": $(($(ab_cpu) - _c1)), \"read_wakeups\": $(($(ab_wakeups) - _v1))"
		st_detach "$_p" "$_d" "turn $1"
		;;
	control)
		rig_attach "$AB_BUSID"
		rig_wait_gadget_zero
		_c0=$(ab_cpu)
		_s=0
		for _t in 9 10; do
			# shellcheck disable=SC2086 # TESTUSB_ARGS is a word list
			rig_testusb "ab_$1" "$GZ_DEV" "$_t" $TESTUSB_ARGS >"$W/ab.out" 2>&1 ||
				fail "turn $1 ($2): testusb test $_t failed: $(tail -n 3 "$W/ab.out")"
			_secs=$(sed -n "s/.* test $_t, *\([0-9.]*\) secs.*/\1/p" "$W/ab.out")
			_s=$(awk -v a="$_s" -v b="$_secs" 'BEGIN { printf "%.6f", a + b }')
		done
		_fig="\"control_s\": $_s, \"control_cpu_ticks\": $(($(ab_cpu) - _c0))"
		_port=$(rig_vhci_port "$(basename "$GZ_DIR")") || fail "turn $1: no vhci port for Gadget Zero"
		usbip detach -p "$_port" >/dev/null 2>&1 || fail "turn $1: usbip detach -p $_port failed"
		rig_wait 10 rig_vhci_free || fail "turn $1: vhci port $_port not freed"
		;;
	esac
	rig_stop_gateway TERM
	log "turn $1 ($2): $_fig"
	echo "{\"side\": \"$2\", $_fig}" >>"$W/turns"
}

_n=0
: >"$W/turns"
for side in $AB_TURNS; do
	_n=$((_n + 1))
	ab_turn "$_n" "$side"
done
rig_field turns "[$(sed '$!s/$/,/' "$W/turns" | tr -d '\n')]"
log "gateway_ab ok"
